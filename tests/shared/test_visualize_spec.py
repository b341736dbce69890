"""The `visualize` job spec: defaults, the echo, items, caps, and errors that name the field."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import SpecError
from shared.spec.inputs import InputRef
from shared.spec.model import ModelSpec, Preprocessing
from shared.spec.visualize import (
    DREAM_DEFAULTS,
    FEATURE_DEFAULTS,
    INVERT_DEFAULTS,
    AlphaNorm,
    Blur,
    ChannelObjective,
    ClassObjective,
    DreamObjective,
    InvertObjective,
    Regularizers,
    TotalVariation,
    VisualizeSpec,
    parse_visualize_spec,
)

MAX_STEPS = 2000


def parse(raw: dict, max_steps: int = MAX_STEPS) -> VisualizeSpec:
    return parse_visualize_spec({"model": "m", **raw}, max_steps=max_steps)


def test_defaults_are_filled_in_and_echoed():
    spec = parse({"objective": {"class": 281}})
    assert spec == VisualizeSpec("m", (ClassObjective(281),))
    assert spec.to_json() == {
        "kind": "visualize",
        "model": "m",
        "objective": {"class": 281},
        "regularizers": {
            "l2": 0.0, "blur": None, "clip_norm": 0.0, "clip_contribution": 0.0, "tv": None,
            "alpha_norm": None, "jitter": 32, "scale": [0.75, 1.25], "rotate": 15.0,
            "parametrization": "fourier",
        },
        "steps": 512, "lr": 0.05, "seed": 0, "size": None, "starts": 1, "batch": 8,
        "snapshot_every": 64,
    }


def test_every_field_round_trips_through_the_echo():
    raw = {
        "kind": "visualize",
        "objective": [
            {"class": 3},
            {"layer": "layer2.0", "channel": 5, "position": [1, 2]},
            {"invert": {"uri": "s3://bucket/cat.png"}, "layer": "layer3"},
            {"dream": {"upload": "photo"}, "layer": "layer4", "octaves": 2},
            {"dream": {"item": 4}, "layer": "layer1"},
        ],
        "regularizers": {
            "l2": 1e-4, "blur": {"every": 4, "sigma": 0.5}, "clip_norm": 0.1,
            "clip_contribution": 0.1, "tv": {"beta": 2, "weight": 0.05},
            "alpha_norm": {"alpha": 6, "weight": 1e-5}, "jitter": 8, "scale": [0.9, 1.1],
            "rotate": 10, "parametrization": "pixel",
        },
        "steps": 100, "lr": 0.1, "seed": 7, "size": 128, "starts": 2, "batch": 3,
        "snapshot_every": 10,
    }
    spec = parse(raw)
    assert spec.objectives == (
        ClassObjective(3),
        ChannelObjective("layer2.0", 5, (1, 2)),
        InvertObjective(InputRef("uri", "s3://bucket/cat.png"), "layer3"),
        DreamObjective(InputRef("upload", "photo"), "layer4", 2, 1.4),
        DreamObjective(InputRef("item", 4), "layer1", 3, 1.4),
    )
    assert spec.regularizers == Regularizers(
        1e-4, Blur(4, 0.5), 0.1, 0.1, TotalVariation(2.0, 0.05), AlphaNorm(6.0, 1e-5), 8,
        (0.9, 1.1), 10.0, "pixel")
    echo = spec.to_json()
    assert json.loads(json.dumps(echo)) == echo
    assert parse_visualize_spec(echo, max_steps=MAX_STEPS) == spec
    assert echo["objective"][3] == {"dream": {"upload": "photo"}, "layer": "layer4",
                                    "octaves": 2, "octave_scale": 1.4}


def test_null_turns_a_regularizer_off_and_partial_objects_take_defaults():
    spec = parse({"objective": {"class": 1},
                  "regularizers": {"jitter": None, "scale": None, "rotate": None,
                                   "blur": {"sigma": 1.5}, "tv": {}, "alpha_norm": {"alpha": 3}}})
    reg = spec.regularizers
    assert (reg.jitter, reg.scale, reg.rotate) == (0, (1.0, 1.0), 0.0)
    assert reg.blur == Blur(every=4, sigma=1.5)
    assert reg.tv == TotalVariation(2.0, 0.05)
    assert reg.alpha_norm == AlphaNorm(3.0, 1e-5)
    assert parse({"objective": {"class": 1}, "regularizers": {"blur": None}}).regularizers.blur \
        is None


def test_defaults_follow_the_kind_of_the_objectives():
    invert = {"invert": {"item": 0}, "layer": "a"}
    dream = {"dream": {"item": 0}, "layer": "a"}
    for objective, defaults in (({"class": 1}, FEATURE_DEFAULTS),
                                ([{"layer": "a", "channel": 0}], FEATURE_DEFAULTS),
                                (invert, INVERT_DEFAULTS), ([dream, dream], DREAM_DEFAULTS),
                                ([{"class": 1}, invert], FEATURE_DEFAULTS),
                                ([dream, invert], FEATURE_DEFAULTS)):
        spec = parse({"objective": objective})
        assert (spec.regularizers, spec.steps, spec.lr) == (
            defaults.regularizers, defaults.steps, defaults.lr)
    assert INVERT_DEFAULTS.regularizers.tv is not None
    assert INVERT_DEFAULTS.regularizers.alpha_norm is not None
    assert DREAM_DEFAULTS.regularizers.parametrization == "pixel"
    # A key left out takes the kind's default; the others are as given.
    spec = parse({"objective": invert, "regularizers": {"jitter": 4}})
    assert spec.regularizers == replace(INVERT_DEFAULTS.regularizers, jitter=4)


def test_items_are_objective_major_and_batches_keep_their_order():
    spec = parse({"objective": [{"class": 0}, {"class": 1}, {"class": 2}], "starts": 2,
                  "batch": 4})
    items = spec.items()
    assert [(i.index, i.objective_index, i.start) for i in items] == [
        (0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1), (4, 2, 0), (5, 2, 1)]
    assert [i.objective for i in items] == [ClassObjective(k) for k in (0, 0, 1, 1, 2, 2)]
    assert [[i.index for i in b] for b in spec.batches()] == [[0, 1, 2, 3], [4, 5]]
    assert spec.total_steps == 6 * 512
    assert items[3].to_json() == {"index": 3, "objective": {"class": 1}, "objective_index": 1,
                                  "start": 1}


def test_steps_are_capped_by_the_setting():
    assert parse({"objective": {"class": 0}}, max_steps=100).steps == 100
    assert parse({"objective": {"class": 0}, "steps": 100}, max_steps=100).steps == 100
    with pytest.raises(SpecError, match="between 1 and 100") as info:
        parse({"objective": {"class": 0}, "steps": 101}, max_steps=100)
    assert info.value.field == "steps"


def test_for_model_checks_classes_and_fills_the_size():
    model = ModelSpec("m", num_classes=10, preprocessing=Preprocessing(input_size=96))
    assert parse({"objective": {"class": 9}}).for_model(model).size == 96
    assert parse({"objective": {"class": 9}, "size": 64}).for_model(model).size == 64
    with pytest.raises(SpecError) as info:
        parse({"objective": [{"class": 1}, {"class": 10}]}).for_model(model)
    assert info.value.field == "objective[1].class"
    with pytest.raises(SpecError) as info:
        parse({"objective": {"dream": {"item": 0}, "layer": "a", "octaves": 4,
                             "octave_scale": 2.0}}).for_model(model)  # 96 / 8 = 12 px
    assert info.value.field == "objective.octaves"


@pytest.mark.parametrize(("raw", "field"), [
    ({}, "objective"),
    ({"objective": "class"}, "objective"),
    ({"objective": []}, "objective"),
    ({"objective": [{"class": 1}] * 65}, "objective"),
    ({"objective": {"class": -1}}, "objective.class"),
    ({"objective": {"class": 1.0}}, "objective.class"),
    ({"objective": {"class": True}}, "objective.class"),
    ({"objective": {"class": 1, "layer": "a"}}, "objective.layer"),
    ({"objective": [{"class": 1}, {"layer": "a", "channel": -1}]}, "objective[1].channel"),
    ({"objective": [{"class": 1}, {"layer": "a"}]}, "objective[1].channel"),
    ({"objective": {"channel": 1}}, "objective.layer"),
    ({"objective": {"layer": "", "channel": 1}}, "objective.layer"),
    ({"objective": {"layer": "a", "channel": 1, "position": [1]}}, "objective.position"),
    ({"objective": {"layer": "a", "channel": 1, "position": [1, -2]}},
     "objective.position[1]"),
    ({"objective": {"invert": {"item": 0}}}, "objective.layer"),
    ({"objective": {"invert": {"path": "/etc"}, "layer": "a"}}, "objective.invert"),
    ({"objective": {"invert": {"item": -1}, "layer": "a"}}, "objective.invert.item"),
    ({"objective": {"dream": {"uri": ""}, "layer": "a"}}, "objective.dream.uri"),
    ({"objective": {"dream": {"item": 0}, "layer": "a", "octaves": 0}}, "objective.octaves"),
    ({"objective": {"dream": {"item": 0}, "layer": "a", "octave_scale": 0.5}},
     "objective.octave_scale"),
    ({"objective": {"dream": {"item": 0}, "layer": "a", "jitter": 2}}, "objective.jitter"),
    ({"objective": {"nothing": 1}}, "objective"),
    ({"objective": {"class": 1}, "steps": 0}, "steps"),
    ({"objective": {"class": 1}, "lr": 0}, "lr"),
    ({"objective": {"class": 1}, "lr": "fast"}, "lr"),
    ({"objective": {"class": 1}, "seed": -1}, "seed"),
    ({"objective": {"class": 1}, "seed": 2**63}, "seed"),
    ({"objective": {"class": 1}, "size": 513}, "size"),
    ({"objective": {"class": 1}, "size": 8}, "size"),
    ({"objective": {"class": 1}, "starts": 0}, "starts"),
    ({"objective": [{"class": 1}] * 5, "starts": 60}, "starts"),
    ({"objective": {"class": 1}, "batch": 65}, "batch"),
    ({"objective": {"class": 1}, "snapshot_every": -1}, "snapshot_every"),
    ({"objective": {"class": 1}, "steps": 2000, "snapshot_every": 10}, "snapshot_every"),
    ({"objective": {"class": 1}, "colour": "red"}, "colour"),
    ({"objective": {"class": 1}, "kind": "attribution"}, "kind"),
    ({"objective": {"class": 1}, "model": "Bad Name"}, "model"),
    ({"objective": {"class": 1}, "regularizers": []}, "regularizers"),
    ({"objective": {"class": 1}, "regularizers": {"dropout": 1}}, "regularizers.dropout"),
    ({"objective": {"class": 1}, "regularizers": {"l2": 1}}, "regularizers.l2"),
    ({"objective": {"class": 1}, "regularizers": {"l2": -0.1}}, "regularizers.l2"),
    ({"objective": {"class": 1}, "regularizers": {"blur": 0.5}}, "regularizers.blur"),
    ({"objective": {"class": 1}, "regularizers": {"blur": {"sigma": 0}}},
     "regularizers.blur.sigma"),
    ({"objective": {"class": 1}, "regularizers": {"blur": {"every": 0}}},
     "regularizers.blur.every"),
    ({"objective": {"class": 1}, "regularizers": {"blur": {"width": 1}}},
     "regularizers.blur.width"),
    ({"objective": {"class": 1}, "regularizers": {"clip_norm": 101}},
     "regularizers.clip_norm"),
    ({"objective": {"class": 1}, "regularizers": {"clip_contribution": -1}},
     "regularizers.clip_contribution"),
    ({"objective": {"class": 1}, "regularizers": {"tv": {"beta": 0.5}}},
     "regularizers.tv.beta"),
    ({"objective": {"class": 1}, "regularizers": {"tv": {"weight": -1}}},
     "regularizers.tv.weight"),
    ({"objective": {"class": 1}, "regularizers": {"alpha_norm": {"alpha": 0}}},
     "regularizers.alpha_norm.alpha"),
    ({"objective": {"class": 1}, "regularizers": {"jitter": 1.5}}, "regularizers.jitter"),
    ({"objective": {"class": 1}, "regularizers": {"scale": 1.1}}, "regularizers.scale"),
    ({"objective": {"class": 1}, "regularizers": {"scale": [1.1, 0.9]}},
     "regularizers.scale"),
    ({"objective": {"class": 1}, "regularizers": {"scale": [0.1, 1.0]}},
     "regularizers.scale[0]"),
    ({"objective": {"class": 1}, "regularizers": {"rotate": 181}}, "regularizers.rotate"),
    ({"objective": {"class": 1}, "regularizers": {"parametrization": "cppn"}},
     "regularizers.parametrization"),
])
def test_errors_name_the_field(raw, field):
    with pytest.raises(SpecError) as info:
        parse(raw)
    assert info.value.field == field


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("place", "field"), [
    (lambda v: {"lr": v}, "lr"),
    (lambda v: {"regularizers": {"l2": v}}, "regularizers.l2"),
    (lambda v: {"regularizers": {"blur": {"sigma": v}}}, "regularizers.blur.sigma"),
    (lambda v: {"regularizers": {"tv": {"weight": v}}}, "regularizers.tv.weight"),
    (lambda v: {"regularizers": {"alpha_norm": {"alpha": v}}}, "regularizers.alpha_norm.alpha"),
    (lambda v: {"regularizers": {"scale": [0.9, v]}}, "regularizers.scale[1]"),
    (lambda v: {"regularizers": {"rotate": v}}, "regularizers.rotate"),
    (lambda v: {"regularizers": {"clip_norm": v}}, "regularizers.clip_norm"),
])
def test_non_finite_numbers_are_refused(bad, place, field):
    with pytest.raises(SpecError, match="finite") as info:
        parse({"objective": {"class": 1}, **place(bad)})
    assert info.value.field == field


def test_caller_fields_pass_through_only_when_named():
    raw = {"model": "m", "objective": {"class": 1}, "inputs": [{"uri": "s3://b/k"}]}
    with pytest.raises(SpecError) as info:
        parse_visualize_spec(raw, max_steps=MAX_STEPS)
    assert info.value.field == "inputs"
    assert parse_visualize_spec(raw, max_steps=MAX_STEPS, extra_fields=("inputs",)).model == "m"




@given(lr=st.floats(1e-4, 10.0), l2=st.floats(0.0, 0.99), sigma=st.floats(0.01, 16.0),
       every=st.integers(1, 50), jitter=st.integers(0, 128), low=st.floats(0.25, 4.0),
       spread=st.floats(0.0, 3.0), rotate=st.floats(0.0, 180.0), clip=st.floats(0.0, 100.0),
       steps=st.integers(1, MAX_STEPS), starts=st.integers(1, 4),
       seed=st.integers(0, 2**63 - 1))
def test_any_valid_spec_round_trips(lr, l2, sigma, every, jitter, low, spread, rotate, clip,
                                    steps, starts, seed):
    high = min(4.0, low + spread)
    spec = parse({"objective": [{"class": 1}, {"layer": "x", "channel": 2}],
                  "regularizers": {"l2": l2, "blur": {"every": every, "sigma": sigma},
                                   "jitter": jitter, "scale": [low, high], "rotate": rotate,
                                   "clip_norm": clip},
                  "lr": lr, "steps": steps, "starts": starts, "seed": seed,
                  "snapshot_every": 0})
    assert parse_visualize_spec(spec.to_json(), max_steps=MAX_STEPS) == spec
    assert len(spec.items()) == 2 * starts
    assert spec.total_steps == 2 * starts * steps


def test_the_spec_module_imports_without_torch():
    # The API validates visualize jobs with it, and the API never imports torch.
    code = ("import sys, shared.spec.visualize; "
            "sys.exit(sorted({'torch', 'numpy', 'flask'} & set(sys.modules)) or 0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
