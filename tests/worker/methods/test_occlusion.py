"""Occlusion against Captum, on a model whose score depends on one known region, and its
refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum_refs import captum_occlusion, relative_error
from engine_testing import IMAGENET_MEAN as MEAN
from engine_testing import IMAGENET_STD as STD
from torch import nn

from shared.errors import SpecError
from shared.spec.methods import method_spec
from shared.spec.targets import ClassTarget
from worker.engine.baselines import blurred
from worker.engine.core import Engine
from worker.engine.methods.occlusion import windows

CLASSES = [1, 3]


def maps_of(result, position: int = 0) -> np.ndarray:
    return np.stack([image.maps[position].values for image in result.images])


@pytest.mark.parametrize(("architecture", "fill", "patch", "stride"), [
    ("resnet18", "zero", 12, 8), ("resnet18", "blur", 10, 7), ("vgg11", "mean", 16, 8)])
def test_equals_captum(architecture, fill, patch, stride, request):
    model = request.getfixturevalue(architecture)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    spec = method_spec("occlusion", patch=patch, stride=stride, fill=fill)
    result = Engine(model, mean=MEAN, std=STD).attribute(x, [spec],
                                                         [ClassTarget(c) for c in CLASSES])
    baselines = {  # the engine's own fill values, bit for bit (the blur: test_baselines.py)
        "zero": (-torch.tensor(MEAN) / torch.tensor(STD)).view(1, 3, 1, 1).expand_as(x),
        "mean": 0.0,
        "blur": blurred(x),
    }[fill]
    theirs = captum_occlusion(model, x, CLASSES, patch, stride, baselines)
    assert relative_error(maps_of(result), theirs) <= 1e-4
    assert result.coverage[0] is None


class OneRegion(nn.Module):
    """Class 0's logit is the sum of squares of rows 8..15, columns 16..23 of channel 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 1, 8:16, 16:24] ** 2).sum((1, 2))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_a_model_that_looks_at_one_region():
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    patch, stride = 8, 4
    result = Engine(OneRegion()).attribute(x, [method_spec("occlusion", patch=patch,
                                                           stride=stride, fill="mean")],
                                           ClassTarget(0))
    ours = maps_of(result)[0]
    # By hand: a window's drop is the sum of squares of the region it hides; each pixel
    # gets the mean over the windows that cover it.
    squares = np.zeros((32, 32))
    squares[8:16, 16:24] = x[0, 1, 8:16, 16:24].numpy() ** 2
    total, count = np.zeros((32, 32)), np.zeros((32, 32))
    for y0 in range(0, 32 - patch + 1, stride):
        for x0 in range(0, 32 - patch + 1, stride):
            total[y0:y0 + patch, x0:x0 + patch] += squares[y0:y0 + patch, x0:x0 + patch].sum()
            count[y0:y0 + patch, x0:x0 + patch] += 1
    expected = total / count
    for channel in range(3):
        np.testing.assert_allclose(ours[channel], expected, rtol=1e-5, atol=1e-6)
    # No window that covers a pixel more than a patch away from the region touches it.
    assert np.all(ours[:, :8 - patch + 1 or None, :] == 0) and np.all(ours[:, 24:, :] == 0)
    assert ours[:, 8:16, 16:24].min() > 0


def test_windows_reach_the_end_of_each_side():
    assert windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert windows(10, 4, 4) == [(0, 4), (4, 8), (8, 10)]  # the last one cut at the border
    assert windows(8, 8, 2) == [(0, 8)]


def test_patches_that_cannot_tile_the_input_are_refused(tiny_cnn, tiny_images):
    engine = Engine(tiny_cnn)
    with pytest.raises(SpecError, match=r"methods\[0\].patch: 40 is larger"):
        engine.attribute(tiny_images, [method_spec("occlusion", patch=40)])
    with pytest.raises(SpecError, match=r"methods\[0\].stride: 9 would leave pixels"):
        engine.attribute(tiny_images, [method_spec("occlusion", patch=8, stride=9)])
