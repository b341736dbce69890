"""The default Grad-CAM layer per model family, found from the structure."""

from __future__ import annotations

import pytest
import torch
from engine_testing import seeded_architecture
from torch import nn

from shared.errors import UnsupportedModelError
from worker.engine import Engine


@pytest.mark.parametrize(("architecture", "layer"), [
    ("resnet18", "layer4"),
    ("vgg11", "features.19"),  # the last ReLU, before the last max-pool
    ("mobilenet_v2", "features"),
    ("densenet121", "features"),
    ("timm:efficientnet_lite0", "bn2"),  # BatchNormAct2d: the head conv's BN and ReLU6
])
def test_the_last_convolutional_block_of_each_family(architecture, layer, request):
    model = request.getfixturevalue(architecture) if architecture in ("resnet18", "vgg11") \
        else seeded_architecture(architecture)
    assert Engine(model).default_layer(torch.zeros(1, 3, 32, 32)) == layer


def test_a_block_that_ends_in_functional_calls_and_a_global_max_pool(tiny_cnn):
    # TinyCNN: conv3, then torch.relu (no module), then AdaptiveMaxPool2d inside `head`.
    assert Engine(tiny_cnn).default_layer(torch.zeros(1, 3, 32, 32)) == "conv3"


def test_a_model_without_feature_maps_is_told_to_name_a_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UnsupportedModelError, match="`layer` parameter"):
        Engine(model).default_layer(torch.zeros(1, 3, 2, 2))
