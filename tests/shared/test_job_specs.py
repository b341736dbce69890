"""Job spec validation: defaults, and errors that name the field."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.methods import MethodSpec
from shared.specs import (
    PREDICTED,
    ClassTarget,
    JobSpec,
    ModelSpec,
    job_spec_from_json,
    parse_input_uris,
    parse_job_spec,
)


def test_defaults_and_round_trip():
    spec = parse_job_spec({"model": "m"})
    assert spec == JobSpec("m", (MethodSpec("gradient"),), PREDICTED, "max_abs",
                           ("npy", "png", "overlay"))
    full = parse_job_spec({"model": "m", "methods": ["deconvnet", "gradient"],
                           "target": {"class": 3}, "reduce": "l2", "outputs": ["png"]})
    assert job_spec_from_json(full.to_json()) == full


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
    ([], "spec"),
])
def test_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse_job_spec(raw)
    assert info.value.field == field


def test_targets_are_checked_against_the_model():
    model = ModelSpec("m", num_classes=10)
    JobSpec("m", target=ClassTarget(9)).check_model(model)
    with pytest.raises(SpecError, match="target.class"):
        JobSpec("m", target=ClassTarget(10)).check_model(model)


@pytest.mark.parametrize(("raw", "field"), [
    (None, "inputs"), ([], "inputs"), (["s3://b/k"], "inputs[0]"),
    ([{"uri": "s3://b/k"}, {"uri": 3}], "inputs[1].uri"),
])
def test_input_uris(raw, field):
    with pytest.raises(SpecError) as info:
        parse_input_uris(raw)
    assert info.value.field == field
    assert parse_input_uris([{"uri": "s3://b/k"}]) == ("s3://b/k",)


def test_methods_are_echoed_as_given():
    spec = parse_job_spec({"model": "m", "methods": ["gradient", {"name": "deconvnet"},
                                                     "gradient"]})
    assert [m.name for m in spec.methods] == ["gradient", "deconvnet"]
    assert spec.to_json()["methods"] == ["gradient", {"name": "deconvnet"}]
