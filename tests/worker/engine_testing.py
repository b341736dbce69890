"""Small helpers shared by the engine tests (the fixtures themselves are in conftest.py)."""

from __future__ import annotations

import numpy as np
import torch

from shared.specs import ClassTarget
from worker.engine import Engine
from worker.models import build_architecture

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
