"""Job spec validation: defaults, and errors that name the field."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from shared.errors import SpecError, TooLargeError
from shared.spec.datasets import parse_dataset, parse_inline_inputs, parse_manifest_line
from shared.spec.job import AttributionSpec, job_spec_from_json, parse_job_spec
from shared.spec.methods import MethodSpec
from shared.spec.model import ModelSpec, parse_model_spec
from shared.spec.targets import LABEL, PREDICTED, ClassTarget


def test_defaults_and_round_trip():
    spec = parse_job_spec({"model": "m"})
    assert (spec.kind, spec.model, spec.seed) == ("attribution", "m", 0)
    assert spec.work == AttributionSpec((MethodSpec("gradient", {"render": "heatmap"}),),
                                        PREDICTED, "max_abs", ("npy", "png", "overlay"))
    assert spec.to_json()["overlay_opacity"] == 1.0
    full = parse_job_spec({"model": "m", "methods": ["deconvnet", "gradient"],
                           "target": {"class": 3}, "reduce": "l2", "outputs": ["png"]})
    again = job_spec_from_json(full.to_json())
    # Methods with parameters echo as objects, defaults filled in (and read back as ones).
    assert again.to_json() == full.to_json()
    assert full.to_json()["methods"] == [
        {"name": "deconvnet", "rule": "relu", "render": "signed"},
        {"name": "gradient", "render": "heatmap"}]
    assert [(m.name, m.params) for m in again.work.methods] == [
        (m.name, m.params) for m in full.work.methods]
    assert again.work.target == full.work.target and again.work.outputs == full.work.outputs


@pytest.mark.parametrize(("raw", "field"), [
    ({}, "model"),
    ({"model": "Bad Name"}, "model"),
    ({"model": "m", "methods": ["lrp"]}, "methods[0]"),
    ({"model": "m", "methods": [["gradient"]]}, "methods[0]"),
    ({"model": "m", "methods": [{"a": 1}]}, "methods[0]"),
    ({"model": "m", "methods": [{"name": "gradient", "samples": 3}]}, "methods[0].samples"),
    ({"model": "m", "methods": []}, "methods"),
    ({"model": "m", "target": {"class": -1}}, "target.class"),
    ({"model": "m", "target": {"topk": 0}}, "target.topk"),
    ({"model": "m", "reduce": "mean"}, "reduce"),
    ({"model": "m", "outputs": ["jpg"]}, "outputs"),
    ({"model": "m", "colour": "red"}, "colour"),
    ({"model": "m", "kind": "nonsense"}, "kind"),
    ({"model": "m", "seed": -1}, "seed"),
    ({"model": "m", "seed": 1.5}, "seed"),
    ({"model": "m", "map_dtype": "int8"}, "map_dtype"),
    ({"model": "m", "audit": {"sanity": {"sample": 0}}}, "audit.sanity.sample"),
    ({"model": "m", "retention_s": 0}, "retention_s"),
    ([], "spec"),
])
def test_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse_job_spec(raw)
    assert info.value.field == field


def test_targets_are_checked_against_the_model_and_its_layers():
    model = ModelSpec("m", num_classes=10)
    AttributionSpec(target=ClassTarget(9)).check_model(model)
    with pytest.raises(SpecError, match="target.class"):
        AttributionSpec(target=ClassTarget(10)).check_model(model)
    layered = parse_job_spec({"model": "m", "target": {"layer": "layer4", "channel": 3}}).work
    layered.check_model(model, {"layer4": (512, 1, 1)})
    with pytest.raises(SpecError, match="nearest: layer4") as info:
        parse_job_spec({"model": "m", "target": {"layer": "layer5", "channel": 0}}).work \
            .check_model(model, {"layer4": (512, 1, 1)})
    assert info.value.field == "target.layer"
    with pytest.raises(SpecError) as info:
        parse_job_spec({"model": "m", "target": {"layer": "layer4", "channel": 512}}).work \
            .check_model(model, {"layer4": (512, 1, 1)})
    assert info.value.field == "target.channel"


def test_the_label_target_and_inline_inputs_with_labels_and_boxes():
    assert parse_job_spec({"model": "m", "target": "label"}).work.target == LABEL
    (source,) = parse_inline_inputs([{"uri": "s3://b/x.png", "id": "x", "label": "tabby",
                                      "box": [1, 2, 30, 40]}], limit=10)
    assert (source.uri, source.id, source.label, source.box) == ("s3://b/x.png", "x", "tabby",
                                                                 (1, 2, 30, 40))


@pytest.mark.parametrize(("raw", "field"), [
    (None, "inputs"), ([], "inputs"), (["s3://b/k"], "inputs[0]"),
    ([{"uri": "s3://b/k"}, {"uri": 3}], "inputs[1].uri"),
    ([{"uri": "s3://b/k", "box": [5, 5, 5, 9]}], "inputs[0].box"),
    ([{"uri": "s3://b/../k"}], "inputs[0].uri"),
    ([{"uri": "relative/k.png"}], "inputs[0].uri"),
    ([{"uri": "s3://b/k", "colour": 1}], "inputs[0].colour"),
])
def test_inline_inputs_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse_inline_inputs(raw, limit=10)
    assert info.value.field == field


def test_too_many_inline_inputs_is_413():
    with pytest.raises(TooLargeError):
        parse_inline_inputs([{"uri": f"s3://b/{i}"} for i in range(3)], limit=2)


@pytest.mark.parametrize(("raw", "field"), [
    ({}, "dataset"), ({"manifest": "s3://b/m.jsonl", "labels": "folder"}, "dataset"),
    ({"prefix": "s3://b"}, "dataset.prefix"), ({"prefix": "s3://b/"}, "dataset.prefix"),
    ({"prefix": "s3://b/p", "labels": "colour"}, "dataset.labels"),
    ({"prefix": "s3://b/p", "label_map": {"a": 1}}, "dataset.label_map"),
    ({"webdataset": "s3://b/s-{0..9}.tar", "huggingface": "s3://b/hf"}, "dataset"),
    ({"webdataset": "s3://b/s-{0..9}.tar", "split": "train"}, "dataset.split"),
    ({"webdataset": "s3://b/s-{000000..099999}.tar", "labels": "folder"}, "dataset.labels"),
    ({"webdataset": "s3://b/s-{000000..100000}.tar"}, "dataset.webdataset"),
    ({"webdataset": "s3://b/{0..999}/s-{0..999}.tar"}, "dataset.webdataset"),
    ({"webdataset": "s3://b/s-{0..9.tar"}, "dataset.webdataset"),
    ({"webdataset": "s3://b/s-{a}.tar"}, "dataset.webdataset"),
    ({"webdataset": "s3://b/{a,../x}.tar"}, "dataset.webdataset"),
    ({"webdataset": "s3://b"}, "dataset.webdataset"),
    ({"webdataset": "s3://b/s.tar", "label_field": "json"}, "dataset.label_field"),
    ({"webdataset": "s3://b/s.tar", "label_field": ""}, "dataset.label_field"),
    ({"webdataset": "s3://b/s.tar", "label_map": ["cat"]}, "dataset.label_map"),
    ({"huggingface": "s3://b/hf", "split": "../x"}, "dataset.split"),
    ({"huggingface": "s3://b/hf", "image_column": ""}, "dataset.image_column"),
    ({"huggingface": "s3://b/hf", "label_column": 3}, "dataset.label_column"),
    ({"huggingface": "s3://b/hf", "label_field": "cls"}, "dataset.label_field"),
    ({"huggingface": 7}, "dataset.huggingface"),
    ({"webdataset": "s3://b/s.tar", "annotations": {"coco": "s3://b/i.json"}},
     "dataset.annotations"),
    ({"huggingface": "s3://b/hf", "annotations": {"voc": "s3://b/A/"}}, "dataset.annotations"),
])
def test_dataset_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse_dataset(raw)
    assert info.value.field == field


def test_container_data_sets_echo_what_was_given():
    wds = {"webdataset": "s3://b/pets/shard-{000000..000099}.tar", "label_field": "cls",
           "label_map": {"cat": 3}}
    hf = {"huggingface": "s3://b/hf", "split": "validation", "image_column": "img",
          "label_column": "fine_label"}
    for raw in (wds, hf, {"webdataset": "s3://b/pets/"}, {"huggingface": "s3://b/hf"},
                {"prefix": "s3://b/p", "labels": "folder", "label_map": {"a": 1}}):
        assert parse_dataset(raw).to_json() == raw
        spec = replace(parse_job_spec({"model": "m"}), dataset=parse_dataset(raw))
        assert job_spec_from_json(json.loads(json.dumps(spec.to_json()))).dataset == spec.dataset
    assert parse_dataset(wds).field == "dataset.webdataset"
    assert parse_dataset(hf).field == "dataset.huggingface"


@pytest.mark.parametrize("index", [10, 11, 10**12])
def test_a_label_map_value_beyond_the_models_classes_is_refused(index):
    model = ModelSpec(name="m", num_classes=10)
    dataset = parse_dataset({"prefix": "s3://b/p", "labels": "folder",
                             "label_map": {"cat": 9, "dog": index}})
    with pytest.raises(SpecError, match=f"{index} is not a class of model 'm'") as info:
        dataset.check_classes(model)
    assert info.value.field == "dataset.label_map.dog"
    parse_dataset({"prefix": "s3://b/p", "labels": "folder",
                   "label_map": {"cat": 0, "dog": 9}}).check_classes(model)


def test_manifest_lines_resolve_relative_uris_and_bad_lines_fail_their_item():
    good = parse_manifest_line('{"uri": "a/1.png", "label": 3}', 0, "s3://b/data")
    assert good.uri == "s3://b/data/a/1.png" and good.label == 3 and good.error is None
    bad = parse_manifest_line("{not json", 4, "s3://b/data")
    assert bad.error.startswith("manifest line 5:")
    escape = parse_manifest_line('{"uri": "../secret.png"}', 0, "s3://b/data")
    assert "'..'" in escape.error


@pytest.mark.parametrize(("raw", "field"), [
    ({"name": "m", "architecture": "resnet18", "num_classes": 10, "std": [float("nan"), 1, 1]},
     "std"),
    ({"name": "m", "architecture": "resnet18", "num_classes": 10, "mean": [1, 2, float("inf")]},
     "mean"),
    ({"name": "m", "architecture": "no-such-net", "num_classes": 10}, "architecture"),
    ({"name": "m", "architecture": "resnet18", "num_classes": 10, "input_size": 4096},
     "input_size"),
])
def test_model_specs_refuse_non_finite_numbers_unknown_architectures_and_huge_inputs(raw, field):
    with pytest.raises(SpecError) as info:
        parse_model_spec(raw)
    assert info.value.field == field


def test_the_architecture_list_matches_the_installed_libraries():
    import timm
    import torchvision

    from shared.spec.model import known_architectures

    expected = set(torchvision.models.list_models(module=torchvision.models))
    expected |= {f"timm:{name}" for name in timm.list_models()}
    assert known_architectures() == expected


def test_methods_are_echoed_as_given():
    spec = parse_job_spec({"model": "m", "methods": ["gradient", {"name": "deconvnet"},
                                                     "gradient"]})
    assert [m.name for m in spec.work.methods] == ["gradient", "deconvnet"]
    assert spec.to_json()["methods"] == [{"name": "gradient", "render": "heatmap"},
                                         {"name": "deconvnet", "rule": "relu",
                                          "render": "signed"}]
