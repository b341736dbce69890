"""Small helpers shared by the engine tests (the fixtures themselves are in conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.models.build import build_architecture

METHODS = ("gradient", "guided_backprop", "deconvnet")
ZOO_CLASSES = 4


def seeded_architecture(name: str, num_classes: int = ZOO_CLASSES, seed: int = 0):
    """A torchvision model with seeded random weights, built as the service builds it."""
    torch.manual_seed(seed)
    return build_architecture(name, num_classes).eval()


def engine_maps(model, x, method, targets=None, **engine_kwargs) -> np.ndarray:
    """N×C×H×W maps of one method (the first map of each image); checks full coverage."""
    if targets is None:
        targets = [ClassTarget(0)] * len(x)
    result = Engine(model, **engine_kwargs).attribute(x, methods=(method,), targets=targets)
    if method != "gradient":
        assert result.coverage[0].complete
    return np.stack([image.maps[0].values for image in result.images])


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def scipy_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """scipy's Gaussian filter over H and W, mirrored borders (torch's `reflect`)."""
    radius = min(math.ceil(3 * sigma), x.shape[-1] - 1, x.shape[-2] - 1)
    return ndimage.gaussian_filter(x.astype(np.float64), sigma=(0, 0, sigma, sigma),
                                   mode="mirror", truncate=radius / sigma)


def hook_count(model: torch.nn.Module) -> int:
    """Forward, forward-pre, backward and backward-pre hooks on every module of `model`."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )
