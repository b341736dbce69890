"""Channel and neuron objectives on transformer layers: a channel is one of a token layer's
features (or a channels-last map's), averaged over the patch tokens with the prefix tokens
left out, and optimizing it raises that mean above its start and above its value on every
random image, read independently with a plain hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from small_transformers import images as random_images
from small_transformers import timm_model
from visualize_setup import PREP, SIZE

from shared.errors import TargetError
from shared.spec.visualize import parse_visualize_spec
from worker.engine.core import Engine
from worker.kinds.visualize import VisualizationRun

STEPS = 16


def make_spec(objective):
    raw = {"model": "m", "objective": objective, "size": SIZE, "snapshot_every": 0,
           "steps": STEPS, "lr": 0.1,
           "regularizers": {"jitter": 4, "scale": None, "rotate": None}}
    return parse_visualize_spec(raw, max_steps=100)


def hooked(model, x: torch.Tensor, layer: str) -> torch.Tensor:
    recorded = []
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, args, out: recorded.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return recorded[0]


CASES = {  # model: (layer, the channel's values on the grid, N×H×W, from the hooked output)
    "deit_tiny_distilled_patch16_224": (
        "blocks.1.norm1", lambda out, c: out[:, 2:, c].reshape(-1, 4, 4)),
    "swin_tiny_patch4_window7_224": ("layers.1", lambda out, c: out[..., c]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_channel_and_a_neuron_of_a_transformer_layer_rise(name):
    layer, channel_values = CASES[name]
    model = timm_model(name)
    objectives = [{"layer": layer, "channel": 5}, {"layer": layer, "channel": 7,
                                                   "position": [1, 2]}]
    spec = make_spec(objectives)
    run = VisualizationRun.start(Engine(model), spec, spec.items(), preprocessing=PREP)
    run.step(STEPS)
    channel, neuron = run.results()
    images = torch.from_numpy(np.stack([channel.image, neuron.image]))
    out = hooked(model, images, layer)
    mean = float(channel_values(out[:1], 5).mean())
    unit = float(channel_values(out[1:], 7)[0, 1, 2])
    assert channel.metrics["final"] == pytest.approx(mean, rel=1e-3, abs=1e-4)
    assert neuron.metrics["final"] == pytest.approx(unit, rel=1e-3, abs=1e-4)
    photos = hooked(model, random_images(8, seed=9), layer)
    beaten = (channel_values(photos, 5).mean(dim=(1, 2)), channel_values(photos, 7)[:, 1, 2])
    for result, photo in zip((channel, neuron), beaten, strict=True):
        assert result.metrics["final"] > result.metrics["initial"]
        assert result.metrics["final"] > float(photo.max())


def test_a_position_off_the_token_grid_is_named():
    spec = make_spec({"layer": "blocks.1", "channel": 0, "position": [4, 0]})
    engine = Engine(timm_model("vit_tiny_patch16_224"))
    with pytest.raises(TargetError, match=r"^objective\.position: \[4, 0\] is not on layer "
                                          r"'blocks.1''s grid \[4, 4\]"):
        VisualizationRun.start(engine, spec, spec.items(), preprocessing=PREP)
    spec = make_spec({"layer": "blocks.1.attn.k_norm", "channel": 0})
    with pytest.raises(TargetError, match=r"^objective\.layer: module 'blocks.1.attn.k_norm' "
                                          "outputs shape"):
        VisualizationRun.start(engine, spec, spec.items(), preprocessing=PREP)
