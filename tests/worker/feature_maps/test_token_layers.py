"""Top activations of transformer layers: the scan of a token or channels-last layer equals a
brute-force scan over its patch tokens (prefix tokens excluded) or grid cells; a token's
projection is the gradient of that token's channel, and its patch box the token's patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from small_transformers import SIDE, images, timm_model

from shared.spec.model import Preprocessing
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps import TopK, project, scan

from .references import brute_force_top, layer_outputs

PREP = Preprocessing(input_size=SIDE, resize=SIDE)
K = 3


def as_grid(outputs: np.ndarray, prefix: int | None, grid: tuple[int, int]) -> np.ndarray:
    """N×C×H×W of a hooked output: tokens after `prefix`, or N×H×W×C (`prefix` None)."""
    if prefix is not None:
        outputs = outputs[:, prefix:].reshape(len(outputs), *grid, outputs.shape[-1])
    return outputs.transpose(0, 3, 1, 2)


CASES = {  # model: (layer, prefix tokens (None: channels last), grid)
    "deit_tiny_distilled_patch16_224": ("blocks.1", 2, (4, 4)),
    "vit_tiny_patch16_224": ("blocks.1.norm1", 1, (4, 4)),
    "swin_tiny_patch4_window7_224": ("layers.1", None, (8, 8)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_scan_equals_a_brute_force_scan_over_tokens(name):
    layer, prefix, grid = CASES[name]
    model = timm_model(name)
    engine = Engine(model)
    x = images(10, seed=3)
    items = [7, 3, 12, 0, 5, 9, 1, 4, 8, 2]
    batches = [(x[:4], items[:4]), (x[4:], items[4:])]
    merged = TopK.merge([scan(engine, [batch], layer, "all", K) for batch in batches])
    outputs = as_grid(layer_outputs(model, [x[:4], x[4:]], layer), prefix, grid)
    expected = brute_force_top(outputs, items, range(outputs.shape[1]), K)
    assert merged.channels == tuple(range(outputs.shape[1]))
    for channel, tops in expected.items():
        got = merged.top(channel)
        assert [(t.index, t.position) for t in got] == [(i, p) for i, _, p in tops]
        np.testing.assert_allclose([t.activation for t in got], [a for _, a, _ in tops],
                                   rtol=1e-5, atol=1e-6)


def test_a_tokens_projection_is_its_gradient_and_its_patch_the_tokens_patch():
    name = "deit_tiny_distilled_patch16_224"
    layer, prefix, grid = CASES[name]
    model = timm_model(name)
    x = images(4, seed=8)
    engine = Engine(model)
    top = scan(engine, [(x, range(4))], layer, [5, 17], 2)
    units = top.entries()
    projections = project(engine, layer, units, dict(enumerate(x)), ["gradient"], PREP)
    module = dict(model.named_modules())[layer]
    recorded: list[torch.Tensor] = []
    for p in projections:
        y, col = p.top.position
        assert p.patch_box == (16 * col, 16 * y, 16 * col + 16, 16 * y + 16)
        assert p.patch.shape == (16, 16, 3)
        image = x[p.top.index][None].clone().requires_grad_(True)
        recorded.clear()
        handle = module.register_forward_hook(lambda m, a, out: recorded.append(out))
        try:
            model(image)
        finally:
            handle.remove()
        token = recorded[0][0, prefix + y * grid[1] + col, p.channel]
        assert float(token.detach()) == pytest.approx(p.top.activation, rel=1e-5)
        (expected,) = torch.autograd.grad(token, image)
        np.testing.assert_allclose(p.maps["gradient"], expected[0].numpy(), rtol=1e-4,
                                   atol=1e-6 * float(expected.abs().max()))
