"""Fixtures for the visualization tests: a seeded resnet18 at 64 px, the example photos at
that size, and a helper that runs a spec to the end. No downloads."""

from __future__ import annotations

import pytest
import torch
from engine_testing import seeded_architecture
from PIL import Image
from visualize_setup import PREP

from shared.examples import EXAMPLES
from worker.engine.core import Engine
from worker.models.build import preprocess_image


@pytest.fixture(scope="session")
def resnet18_model():
    return seeded_architecture("resnet18")


@pytest.fixture(scope="session")
def engine(resnet18_model):
    return Engine(resnet18_model)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """The three example photos (cat, espresso, rocket) preprocessed to 3×64×64."""
    tensors = []
    for example in EXAMPLES.values():
        with Image.open(example.path) as image:
            tensors.append(preprocess_image(image, PREP))
    return torch.stack(tensors)
