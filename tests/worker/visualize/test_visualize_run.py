"""Optimization runs on a seeded resnet18 at 64 px: each objective rises far above its start
and above the example photos; inversion recovers the image; DeepDream changes the image only
where the layer sees something; runs are reproducible, cancellable, capped, and a restored
checkpoint continues exactly as the uninterrupted run."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from visualize_setup import PREP, SIZE

from shared.errors import TargetError
from shared.spec.visualize import parse_visualize_spec
from worker.engine.core import Engine
from worker.kinds.visualize import VisualizationRun
from worker.kinds.visualize.transforms import resize
from worker.models.build import display_image

STILL = {"jitter": None, "scale": None, "rotate": None}
# The default transformations are meant for 224 px; at 64 px, a milder set (Lucid's).
SMALL = {"jitter": 8, "scale": [0.9, 1.1], "rotate": 10}


def make_spec(objective, **fields):
    raw = {"model": "m", "objective": objective, "size": SIZE, "snapshot_every": 0, **fields}
    return parse_visualize_spec(raw, max_steps=2000)


def start(engine, spec, inputs=None, items=None):
    return VisualizationRun.start(engine, spec, spec.items() if items is None else items,
                                  preprocessing=PREP, inputs=inputs)


def run_to_end(engine, spec, inputs=None):
    run = start(engine, spec, inputs)
    run.step(spec.steps)
    assert run.done
    return run


def forward(engine, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and one layer's output of a batch, read with a plain hook on a fresh call."""
    recorded = {}
    module = dict(engine.model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, args, out: recorded.setdefault("a", out))
    try:
        with torch.no_grad():
            logits = engine.model(x)
    finally:
        handle.remove()
    return logits, recorded["a"]


def correlation(a, b) -> float:
    """The correlation of two C×H×W images' grey levels (the mean over channels), which a
    difference of colour alone does not decide."""
    grey = [np.asarray(image, dtype=np.float64).mean(axis=0).ravel() for image in (a, b)]
    return float(np.corrcoef(grey[0], grey[1])[0, 1])


# --- each objective -------------------------------------------------------------------------

def test_class_visualization_beats_its_start_and_every_photo(engine, photos):
    classes = [0, 3]
    run = run_to_end(engine, make_spec([{"class": c} for c in classes], steps=32, lr=0.15,
                                       regularizers=SMALL))
    results = run.results()
    photo_logits, _ = forward(engine, photos, "fc")
    images = torch.from_numpy(np.stack([r.image for r in results]))
    final_logits, _ = forward(engine, images, "fc")
    for r, c, logits in zip(results, classes, final_logits, strict=True):
        best_photo = float(photo_logits[:, c].max())
        spread = float(photo_logits[:, c].max() - photo_logits[:, c].min())
        assert r.metrics["final"] == pytest.approx(float(logits[c]), abs=1e-4)
        assert r.metrics["final"] > best_photo + spread
        assert r.metrics["final"] - r.metrics["initial"] > 3 * spread
        assert len(r.curve) == 32 and r.curve[-1] > r.curve[0]


def test_channel_and_neuron_maximization_beat_their_start_and_every_photo(engine, photos):
    objectives = [{"layer": "layer3", "channel": 5},
                  {"layer": "layer2.1", "channel": 0, "position": [3, 3]}]
    run = run_to_end(engine, make_spec(objectives, steps=32, lr=0.1, regularizers=SMALL))
    channel, neuron = run.results()
    _, layer3 = forward(engine, photos, "layer3")
    _, layer2 = forward(engine, photos, "layer2.1")
    photo_channel = layer3[:, 5].mean(dim=(1, 2))
    photo_neuron = layer2[:, 0, 3, 3]
    for result, photo in ((channel, photo_channel), (neuron, photo_neuron)):
        assert result.metrics["final"] > 10 * result.metrics["initial"]
        assert result.metrics["final"] > 1.2 * float(photo.max())


def test_inversion_recovers_the_representation_and_the_image(engine, photos):
    cat = photos[0]
    run = run_to_end(engine, make_spec({"invert": {"item": 0}, "layer": "layer1"}, steps=48,
                                       lr=0.1, regularizers=STILL), inputs={0: cat})
    (result,) = run.results()
    assert result.metrics["final"] < result.metrics["initial"] / 10
    assert result.curve[-1] < result.curve[0] / 5
    start_image = start(engine, make_spec({"invert": {"item": 0}, "layer": "layer1"},
                                          regularizers=STILL), inputs={0: cat}).images()[0]
    assert correlation(result.image, cat) > 0.5
    assert correlation(result.image, cat) > correlation(start_image, cat) + 0.4
    assert correlation(result.image, cat) > correlation(result.image, photos[2]) + 0.4


def test_deepdream_raises_the_layers_energy_above_every_photo(engine, photos):
    coffee = photos[1]
    run = run_to_end(engine, make_spec({"dream": {"item": 0}, "layer": "layer2", "octaves": 2},
                                       steps=12, lr=0.05), inputs={0: coffee})
    (result,) = run.results()
    _, layer2 = forward(engine, photos, "layer2")
    energy = layer2.square().mean(dim=(1, 2, 3))
    assert result.metrics["initial"] == pytest.approx(float(energy[1]), rel=1e-4)
    assert result.metrics["final"] > 1.3 * float(energy.max())
    assert correlation(result.image, coffee) > 0.5  # still the photo, dreamed upon


def test_deepdream_changes_the_image_only_where_the_layer_sees_something(engine, photos):
    # The right half is the mean colour (0 after normalization): with this seeded network's
    # zero biases every layer is silent there, so its gradient, and the change, is zero
    # beyond the reach of the active left half.
    half = photos[0].clone()
    half[:, :, SIZE // 2:] = 0
    spec = make_spec({"dream": {"item": 0}, "layer": "layer1", "octaves": 2}, steps=4, lr=0.1,
                     regularizers={"parametrization": "pixel", **STILL})
    run = start(engine, spec, inputs={0: half})
    run.step(2)
    change = (torch.from_numpy(run.images()[0]) - half).abs()
    assert float(change[:, :, :SIZE // 2].mean()) > 0.1
    assert float(change[:, :, 56:].max()) == 0.0
    flat = start(engine, spec, inputs={0: torch.zeros(3, SIZE, SIZE)})
    flat.step(2)
    assert not np.any(flat.images())


def test_dream_octaves_run_smaller_views_first(engine, photos):
    spec = make_spec({"dream": {"item": 0}, "layer": "layer1", "octaves": 3,
                      "octave_scale": 2.0}, steps=6)
    run = start(engine, spec, inputs={0: photos[0]})
    item = spec.items()[0]
    assert [run._view_size(item, s) for s in range(6)] == [16, 16, 32, 32, 64, 64]


# --- the run's contract ---------------------------------------------------------------------

FULL = {"blur": {"every": 2, "sigma": 0.5}, "clip_norm": 5, "clip_contribution": 5,
        "l2": 0.01, "tv": {"weight": 0.1}, "alpha_norm": {"weight": 1e-3}}


def mixed_spec(**fields):
    return make_spec([{"class": 1}, {"layer": "layer2", "channel": 3},
                      {"invert": {"item": 0}, "layer": "layer1"},
                      {"dream": {"item": 3}, "layer": "layer1", "octaves": 2}],
                     steps=3, regularizers=FULL, **fields)


@pytest.fixture
def mixed_inputs(photos):
    return {2: photos[0], 3: photos[1]}


def test_a_seeded_run_is_reproducible_and_the_seed_matters(engine, mixed_inputs):
    runs = [run_to_end(engine, mixed_spec(seed=4), mixed_inputs) for _ in range(2)]
    assert np.array_equal(runs[0].images(), runs[1].images())
    assert runs[0].curves == runs[1].curves
    other = start(engine, mixed_spec(seed=5), mixed_inputs)
    assert not np.array_equal(start(engine, mixed_spec(seed=4), mixed_inputs).images()[:3],
                              other.images()[:3])


@pytest.mark.parametrize("parametrization", ["fourier", "pixel"])
def test_a_restored_run_continues_exactly_as_the_uninterrupted_one(engine, mixed_inputs,
                                                                   parametrization, resnet18_model):
    spec = make_spec([{"class": 1}, {"invert": {"item": 1}, "layer": "layer1"},
                      {"dream": {"item": 2}, "layer": "layer1", "octaves": 2}], steps=4,
                     snapshot_every=2, seed=9,
                     regularizers={**FULL, "parametrization": parametrization})
    inputs = {1: mixed_inputs[2], 2: mixed_inputs[3]}
    whole = start(engine, spec, inputs)
    report = whole.step(4)

    first = start(engine, spec, inputs)
    head = first.step(2)
    data = first.checkpoint()
    fresh = Engine(resnet18_model)  # as a fresh task would build it
    restored = VisualizationRun.restore(data, fresh, spec, spec.items(), preprocessing=PREP,
                                        inputs=inputs)
    tail = restored.step(10)

    assert restored.done and restored.steps_done == 4
    assert np.array_equal(restored.images(), whole.images())
    assert head.values + tail.values == report.values
    assert restored.curves == whole.curves
    assert [(s.item, s.step) for s in head.snapshots + tail.snapshots] == \
        [(s.item, s.step) for s in report.snapshots]
    assert [r.metrics for r in restored.results()] == [r.metrics for r in whole.results()]


def test_a_checkpoint_is_refused_for_another_batch(engine, mixed_inputs):
    spec = mixed_spec()
    data = start(engine, spec, mixed_inputs).checkpoint()
    with pytest.raises(ValueError, match="another job or batch"):
        VisualizationRun.restore(data, engine, spec, spec.items()[:2], preprocessing=PREP)
    with pytest.raises(ValueError, match="another job or batch"):
        VisualizationRun.restore(data, engine, mixed_spec(seed=1), spec.items(),
                                 preprocessing=PREP, inputs=mixed_inputs)


def test_an_item_does_not_depend_on_the_rest_of_its_batch(engine, mixed_inputs):
    spec = mixed_spec()
    together = run_to_end(engine, spec, mixed_inputs)
    alone = start(engine, spec, mixed_inputs, items=spec.items()[1:2])
    alone.step(3)
    np.testing.assert_allclose(alone.images()[0], together.images()[1], atol=1e-4)
    np.testing.assert_allclose(alone.curves[0], together.curves[1], rtol=1e-4)


def test_cancellation_is_checked_between_steps_and_the_cap_holds(engine):
    spec = make_spec({"class": 1}, steps=5)
    run = start(engine, spec)
    asked = []

    def should_stop() -> bool:
        asked.append(run.steps_done)
        return run.steps_done == 2

    report = run.step(10, should_stop=should_stop)
    assert report.stopped and len(report.values) == 2 and asked == [0, 1, 2]
    report = run.step(10)
    assert not report.stopped and len(report.values) == 3 and run.done
    assert run.step(10).values == [] and run.steps_done == 5 and len(run.curves[0]) == 5


def test_snapshots_and_result_files(engine):
    spec = make_spec([{"class": 0}, {"class": 1}], steps=5, snapshot_every=2)
    run = start(engine, spec)
    snapshots = run.step(5).snapshots
    assert [(s.item, s.step) for s in snapshots] == [(0, 2), (1, 2), (0, 4), (1, 4)]
    for result in run.results():
        image = result.image
        assert image.dtype == np.float32 and image.shape == (3, SIZE, SIZE)
        assert np.array_equal(np.load(io.BytesIO(result.npy())), image)
        with Image.open(io.BytesIO(result.png())) as png:
            assert png.mode == "RGB" and png.size == (SIZE, SIZE)
            assert np.array_equal(np.asarray(png), display_image(image, PREP))
        assert len(result.curve) == 5
        json.dumps(result.metrics)
    with Image.open(io.BytesIO(snapshots[0].png())) as png:
        assert png.size == (SIZE, SIZE)


def test_the_model_is_left_as_it_was(engine, resnet18_model, mixed_inputs):
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    caller = {k: v.clone() for k, v in resnet18_model.state_dict().items()}
    run_to_end(engine, mixed_spec(), mixed_inputs)
    assert not engine.model.training
    assert not any(p.requires_grad for p in engine.model.parameters())
    for key, value in engine.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for key, value in resnet18_model.state_dict().items():
        assert torch.equal(value, caller[key]), key
    assert all(not m._forward_pre_hooks and not m._backward_hooks
               for m in engine.model.modules())


def test_inputs_of_another_size_are_resized(engine, photos):
    big = resize(photos[:1], 96)[0]
    spec = make_spec({"dream": {"item": 0}, "layer": "layer1"}, steps=1)
    run = start(engine, spec, inputs={0: big})
    assert run.results()[0].metrics["initial"] == pytest.approx(
        start(engine, spec, inputs={0: resize(big[None], SIZE)[0]}).initial[0])


def test_bad_layers_and_missing_inputs_are_named(engine):
    with pytest.raises(TargetError, match=r"^objective\[1\]\.layer: no module named 'layer9'"):
        start(engine, make_spec([{"class": 0}, {"layer": "layer9", "channel": 0}]))
    with pytest.raises(TargetError, match=r"^objective\.channel: 999 is out of range"):
        start(engine, make_spec({"layer": "layer1", "channel": 999}))
    with pytest.raises(TargetError, match=r"^objective\.class: 7 is out of range"):
        start(engine, make_spec({"class": 7}))
    with pytest.raises(ValueError, match="item 0 .* needs its input"):
        start(engine, make_spec({"invert": {"item": 0}, "layer": "layer1"}))
