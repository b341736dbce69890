"""The methods a job may name: their parameters, defaults, bounds and echo."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.spec.inputs import InputRef
from shared.spec.methods import METHODS, method_spec, parse_method, parse_methods

# Each method's `render` default is its paper's picture (docs/engine.md, "Rendering").
DEFAULTS = {
    "gradient": {"render": "heatmap"},
    "guided_backprop": {"rule": "relu", "render": "signed"},
    "deconvnet": {"rule": "relu", "render": "signed"},
    "smoothgrad": {"samples": 25, "noise": 0.15, "base": "gradient", "variant": "mean",
                   "render": "heatmap"},
    "integrated_gradients": {"baseline": "black", "steps": 50, "rule": "gausslegendre",
                             "render": "heatmap"},
    "gradcam": {"layer": None, "render": "cam"},
    "guided_gradcam": {"layer": None, "rule": "relu", "render": "signed"},
    "occlusion": {"patch": 16, "stride": 8, "fill": "mean", "render": "heatmap"},
    "attention_rollout": {"render": "cam"},
    "attention_gradcam": {"render": "cam"},
}
PAPER_YEARS = ("2014", "2015", "2017", "2020", "2021")


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_method_has_its_parameters_with_defaults(name):
    assert dict(method_spec(name).params) == DEFAULTS[name]
    # A plain name echoes with the defaults filled in.
    assert parse_method(name, "m").to_json() == {"name": name, **DEFAULTS[name]}
    listed = METHODS[name].to_json()
    assert listed["name"] == name
    assert {p["name"]: p["default"] for p in listed["params"]} == DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_description_cites_its_paper(name):
    assert any(year in METHODS[name].description for year in PAPER_YEARS)


def test_an_object_echoes_with_its_defaults_filled_in():
    spec = parse_method({"name": "smoothgrad", "samples": 50}, "methods[1]")
    assert spec.to_json() == {"name": "smoothgrad", "samples": 50, "noise": 0.15,
                              "base": "gradient", "variant": "mean", "render": "heatmap"}
    assert spec["samples"] == 50


@pytest.mark.parametrize(("raw", "field", "problem"), [
    ({"name": "smoothgrad", "samples": 0}, "methods[0].samples", "between 1 and 1000"),
    ({"name": "smoothgrad", "samples": 2.5}, "methods[0].samples", "integer"),
    ({"name": "smoothgrad", "noise": -0.1}, "methods[0].noise", "between 0.0 and 10.0"),
    ({"name": "smoothgrad", "base": "deconvnet"}, "methods[0].base", "one of"),
    ({"name": "smoothgrad", "variant": "max"}, "methods[0].variant", "one of"),
    ({"name": "integrated_gradients", "steps": 1}, "methods[0].steps", "between 2 and 1000"),
    ({"name": "integrated_gradients", "rule": "riemann_left"}, "methods[0].rule", "one of"),
    ({"name": "integrated_gradients", "baseline": "white"}, "methods[0].baseline",
     "input reference"),
    ({"name": "integrated_gradients", "baseline": {"item": -1}}, "methods[0].baseline.item",
     ">= 0"),
    ({"name": "gradcam", "layer": ""}, "methods[0].layer", "module name"),
    ({"name": "occlusion", "patch": 0}, "methods[0].patch", "between 1 and 4096"),
    ({"name": "occlusion", "fill": "noise"}, "methods[0].fill", "one of"),
    ({"name": "occlusion", "window": 3}, "methods[0].window", "not a parameter"),
    ({"name": "guided_backprop", "rule": "gelu"}, "methods[0].rule", "one of ['relu', 'gated']"),
    ({"name": "deconvnet", "rule": None}, "methods[0].rule", "one of ['relu', 'gated']"),
    ({"name": "guided_gradcam", "rule": "Gated"}, "methods[0].rule", "one of"),
    ({"name": "gradient", "rule": "gated"}, "methods[0].rule", "its parameters are ['render']"),
    ({"name": "gradcam", "render": "jet"}, "methods[0].render",
     "one of ['heatmap', 'signed', 'cam']"),
    ({"name": "smoothgrad", "rule": "gated"}, "methods[0].rule", "not a parameter"),
])
def test_bad_parameters_name_the_field(raw, field, problem):
    with pytest.raises(SpecError) as info:
        parse_methods([raw])
    assert info.value.field == field
    assert problem in str(info.value)


@pytest.mark.parametrize("name", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_the_gated_rule_is_opt_in_and_echoed(name):
    assert method_spec(name)["rule"] == "relu"
    spec = parse_method({"name": name, "rule": "gated"}, "methods[0]")
    assert spec["rule"] == "gated" and spec.to_json()["rule"] == "gated"
    (rule,) = [p for p in METHODS[name].to_json()["params"] if p["name"] == "rule"]
    assert rule["choices"] == ["relu", "gated"] and "not the paper's" in rule["description"]


def test_an_input_reference_baseline_is_kept_and_echoed():
    spec = parse_method({"name": "integrated_gradients", "baseline": {"upload": "ref"}}, "m")
    assert spec["baseline"] == InputRef("upload", "ref")
    assert spec.to_json()["baseline"] == {"upload": "ref"}


def test_two_configurations_of_one_method_are_both_kept():
    specs = parse_methods(["smoothgrad", {"name": "smoothgrad", "samples": 50}, "smoothgrad"])
    assert [s["samples"] for s in specs] == [25, 50]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
@pytest.mark.parametrize("render", ["heatmap", "signed", "cam"])
def test_any_method_takes_any_render_and_echoes_it(name, render):
    spec = parse_method({"name": name, "render": render}, "methods[0]")
    assert spec["render"] == render and spec.to_json()["render"] == render
    (param,) = [p for p in METHODS[name].to_json()["params"] if p["name"] == "render"]
    assert param["choices"] == ["heatmap", "signed", "cam"]
