"""`top_activations` job fields: defaults, errors naming the field, the projection cap, and
the check against a model's known layer shapes."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.settings import Settings
from shared.spec.layers import Layer, ModelLayers
from shared.spec.methods import method_spec
from shared.spec.top_activations import (
    NOT_RECORDED,
    TOP_ACTIVATIONS_FIELDS,
    TopActivationsSpec,
    nearest_names,
    parse_top_activations,
    top_activations_from_json,
)

SHAPES = {"conv1": (64, 16, 16), "layer1.0.conv1": (64, 8, 8), "layer1.0.conv2": (64, 8, 8),
          "layer2.0.conv1": (128, 4, 4), "layer4": (512, 1, 1)}


def test_defaults_are_k_9_and_deconvnet_until_the_model_says_otherwise():
    spec = parse_top_activations({"layer": "conv1", "channels": [3, 1]})
    assert spec == TopActivationsSpec("conv1", (3, 1), 9,
                                      (method_spec("deconvnet").without("render"),),
                                      NOT_RECORDED)
    assert spec.to_json()["methods"] == [{"name": "deconvnet", "rule": "relu"}]
    assert spec.to_json()["methods_reason"] == NOT_RECORDED
    assert spec.methods == TopActivationsSpec("conv1", (3, 1)).methods


def test_to_json_echoes_with_defaults_and_reads_back():
    spec = parse_top_activations({"layer": "conv1", "channels": "all"})
    assert spec.to_json() == {"layer": "conv1", "channels": "all", "k": 9,
                              "methods": [{"name": "deconvnet", "rule": "relu"}],
                              "methods_reason": NOT_RECORDED}
    assert top_activations_from_json(spec.to_json()).to_json() == spec.to_json()
    full = parse_top_activations({"layer": "layer4", "channels": [0, 5], "k": 64,
                                  "methods": ["gradient", {"name": "guided_backprop"}]})
    assert full.to_json() == {"layer": "layer4", "channels": [0, 5], "k": 64,
                              "methods": ["gradient", {"name": "guided_backprop",
                                                       "rule": "relu"}]}
    assert top_activations_from_json(full.to_json()) == full
    assert tuple(full.to_json()) == TOP_ACTIVATIONS_FIELDS  # the keys the job parser allows


def test_other_job_fields_are_left_to_the_job_parser():
    spec = parse_top_activations({"kind": "top_activations", "model": "m", "layer": "conv1",
                                  "channels": [0], "inputs": [{"uri": "s3://b/k"}]})
    assert spec.layer == "conv1"


def test_a_channel_listed_twice_is_kept_once_in_order():
    assert parse_top_activations({"layer": "a", "channels": [4, 2, 4]}).channels == (4, 2)


@pytest.mark.parametrize(("raw", "field"), [
    ({"channels": [0]}, "layer"),
    ({"layer": "", "channels": [0]}, "layer"),
    ({"layer": 3, "channels": [0]}, "layer"),
    ({"layer": "x" * 257, "channels": [0]}, "layer"),
    ({"layer": "a"}, "channels"),
    ({"layer": "a", "channels": []}, "channels"),
    ({"layer": "a", "channels": "some"}, "channels"),
    ({"layer": "a", "channels": 3}, "channels"),
    ({"layer": "a", "channels": [0, -1]}, "channels[1]"),
    ({"layer": "a", "channels": [True]}, "channels[0]"),
    ({"layer": "a", "channels": [1.0]}, "channels[0]"),
    ({"layer": "a", "channels": [0], "k": 0}, "k"),
    ({"layer": "a", "channels": [0], "k": 65}, "k"),
    ({"layer": "a", "channels": [0], "k": 9.0}, "k"),
    ({"layer": "a", "channels": [0], "k": True}, "k"),
    ({"layer": "a", "channels": [0], "methods": []}, "methods"),
    ({"layer": "a", "channels": [0], "methods": ["lrp"]}, "methods[0]"),
    ({"layer": "a", "channels": [0], "methods": "deconvnet"}, "methods"),
    ({"layer": "a", "channels": [0], "methods": [{"name": "deconvnet", "rule": "gated"}]},
     "methods[0].rule"),
    ({"layer": "a", "channels": [0], "methods": [{"name": "deconvnet", "rule": "x"}]},
     "methods[0].rule"),
    ({"layer": "a", "channels": [0], "methods": ["gradient", {"name": "deconvnet",
                                                             "render": "signed"}]},
     "methods[1].render"),
    ([], "spec"),
])
def test_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse_top_activations(raw)
    assert info.value.field == field


def test_only_the_three_projection_methods_are_allowed(monkeypatch):
    """A method the service knows but that cannot project one activation is refused."""
    from shared.spec import methods

    monkeypatch.setitem(methods.METHODS, "occlusion", methods.MethodInfo("occlusion", "test"))
    with pytest.raises(SpecError, match="cannot project") as info:
        parse_top_activations({"layer": "a", "channels": [0],
                               "methods": ["deconvnet", "occlusion"]})
    assert info.value.field == "methods[1]"


def test_the_cap_counts_channels_times_k_times_methods():
    raw = {"layer": "a", "channels": list(range(10)), "k": 10,
           "methods": ["deconvnet", "gradient"]}  # 200 projections
    assert parse_top_activations(raw, max_projections=200).projections(10) == 200
    with pytest.raises(SpecError, match="200 projections .* limit of 199") as info:
        parse_top_activations(raw, max_projections=199)
    assert info.value.field == "channels"


def test_the_default_cap_is_the_setting():
    assert Settings().max_projections == 20_000
    parse_top_activations({"layer": "a", "channels": list(range(2000)), "k": 10})
    with pytest.raises(SpecError, match="SALIENCY_MAX_PROJECTIONS"):
        parse_top_activations({"layer": "a", "channels": list(range(2001)), "k": 10})


def test_all_channels_cannot_be_capped_without_the_layer_shape():
    spec = parse_top_activations({"layer": "layer4", "channels": "all", "k": 64},
                                 max_projections=100)
    assert spec.channels == "all"
    with pytest.raises(SpecError, match="32768 projections") as info:
        parse_top_activations({"layer": "layer4", "channels": "all", "k": 64},
                              max_projections=100, layer_shapes=SHAPES)
    assert info.value.field == "channels"
    assert spec.projections(512) == 512 * 64
    assert spec.channel_list(3) == (0, 1, 2)


def test_an_unknown_layer_lists_the_nearest_names():
    with pytest.raises(SpecError) as info:
        parse_top_activations({"layer": "layer1.0.conv3", "channels": [0]}, layer_shapes=SHAPES)
    assert info.value.field == "layer"
    assert "'layer1.0.conv3'" in info.value.message
    hint = info.value.message.split("nearest: ")[1].split(", ")
    assert set(hint[:2]) == {"layer1.0.conv1", "layer1.0.conv2"}


def test_a_channel_out_of_range_names_its_place_and_the_layer_size():
    parse_top_activations({"layer": "layer2.0.conv1", "channels": [127]}, layer_shapes=SHAPES)
    with pytest.raises(SpecError, match="128 is out of range; layer 'layer2.0.conv1' has 128 "
                                        r"channels \(0..127\)") as info:
        parse_top_activations({"layer": "layer2.0.conv1", "channels": [5, 128]},
                              layer_shapes=SHAPES)
    assert info.value.field == "channels[1]"


def test_check_shapes_is_what_the_worker_runs_at_first_load():
    spec = parse_top_activations({"layer": "conv1", "channels": "all", "k": 9})
    spec.check_shapes(SHAPES, max_projections=64 * 9)
    with pytest.raises(SpecError, match="576 projections"):
        spec.check_shapes(SHAPES, max_projections=575)
    spec.check_shapes(SHAPES, max_projections=None)


def test_nearest_names_puts_the_closest_first():
    assert nearest_names("layr4", SHAPES)[0] == "layer4"
    assert nearest_names("anything", []) == []


# A VGG-style model's layers as its record keeps them: the first convolution comes before its
# max-pooling, the later ones after; `conv0` was validated before max-pooling was recorded.
LAYERS = ModelLayers({"conv0": Layer("Conv2d", (8, 32, 32)),
                      "features.0": Layer("Conv2d", (8, 32, 32), max_pool_before=False),
                      "features.3": Layer("Conv2d", (16, 16, 16), max_pool_before=True)})


@pytest.mark.parametrize(("layer", "method", "says"), [
    ("features.3", "deconvnet", "a max-pooling precedes layer 'features.3'"),
    ("features.0", "guided_backprop", "no max-pooling precedes layer 'features.0'"),
    ("conv0", "deconvnet", "does not say whether a max-pooling precedes the layer"),
    ("unknown", "deconvnet", "does not say whether a max-pooling precedes the layer"),
])
def test_the_default_projection_is_deconvnet_only_after_a_max_pooling(layer, method, says):
    spec = parse_top_activations({"layer": layer, "channels": [0]}).for_model(LAYERS)
    assert [m.name for m in spec.methods] == [method]
    assert spec.methods_reason.startswith(f"{method}: ") and says in spec.methods_reason
    echo = spec.to_json()
    assert echo["methods"] == [{"name": method, "rule": "relu"}]
    assert echo["methods_reason"] == spec.methods_reason
    assert top_activations_from_json(echo).to_json() == echo  # the worker reads it back


@pytest.mark.parametrize("methods", [["deconvnet"], ["gradient", "guided_backprop"]])
def test_methods_given_are_kept_whatever_the_layer(methods):
    raw = {"layer": "features.0", "channels": [0], "methods": methods}
    spec = parse_top_activations(raw)
    assert spec.for_model(LAYERS) == spec
    assert spec.methods_reason is None
    assert "methods_reason" not in spec.to_json()  # as echoed before defaults were chosen


def test_a_submission_cannot_set_the_reason_a_stored_spec_keeps():
    from shared.spec.job import job_spec_from_json, parse_job_spec

    raw = {"kind": "top_activations", "model": "m", "layer": "a", "channels": [0],
           "methods": ["deconvnet"], "methods_reason": "because"}
    with pytest.raises(SpecError) as err:
        parse_job_spec(raw)
    assert err.value.field == "methods_reason"
    assert job_spec_from_json(raw).work.methods_reason == "because"
