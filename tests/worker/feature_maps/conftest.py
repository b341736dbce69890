"""Fixtures of the feature-map tests: seeded models and inputs, no downloads."""

from __future__ import annotations

import pytest
import torch
from engine_testing import seeded_architecture

from shared.spec.model import parse_model_spec
from worker.engine.core import Engine
from worker.models.build import build_model
from worker.models.builtin import EFFICIENTNET_LITE0_SPEC
from worker.models.builtin import efficientnet_lite0 as lite0


@pytest.fixture(scope="session")
def resnet18():
    return seeded_architecture("resnet18")


@pytest.fixture(scope="session")
def resnet18_engine(resnet18):
    return Engine(resnet18)


@pytest.fixture(scope="session")
def lite0_model(tmp_path_factory):
    """The built-in EfficientNet-Lite0 with its ImageNet weights, as the service builds it."""
    artifact = lite0.artifact(tmp_path_factory.mktemp("builtin"))
    return build_model(parse_model_spec(EFFICIENTNET_LITE0_SPEC), artifact).eval()


@pytest.fixture(scope="session")
def images32() -> torch.Tensor:
    """24 seeded 32×32 inputs."""
    return torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(11))
