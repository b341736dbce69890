"""Receptive fields traced from the model's structure, against the support of the input
gradient of each unit on a positive copy of the model, and against hand-worked arithmetic."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from toy_patterns import TinyCNN

from shared.errors import TargetError, UnsupportedModelError
from worker.kinds.top_activations.feature_maps import (
    layer_receptive_fields,
    layer_shapes,
    receptive_field,
)

from .references import positive_copy, support_boxes


def corners_and_centre(height, width):
    return sorted({(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1),
                   (height // 2, width // 2)})


def check_against_gradient_support(model, layers, size, reference=None):
    """`reference`: the part of the model the layers are in, if not all of it."""
    positive = positive_copy(reference or model)
    shapes = layer_shapes(model, size)
    for layer in layers:
        _, height, width = shapes[layer]
        positions = corners_and_centre(height, width)
        expected = support_boxes(positive, layer, positions, size)
        got = [receptive_field(model, layer, p, size) for p in positions]
        assert got == expected, layer


class Features(nn.Module):
    """VGG's convolutional part under its own names (`features.N`), without the 120M
    parameters of the classifier, which no feature map depends on."""

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.features = vgg.features

    def forward(self, x):
        return self.features(x)


def test_resnet18_matches_the_gradient_support(resnet18):
    check_against_gradient_support(
        resnet18, ["maxpool", "layer1.1.conv1", "layer2.0.downsample.0", "layer3.0.bn2",
                   "layer4"], size=48)


def test_vgg11_matches_the_gradient_support(vgg11):
    check_against_gradient_support(
        vgg11, ["features.2", "features.6", "features.10", "features.16"], size=40,
        reference=Features(vgg11))


def test_hand_worked_boxes(resnet18, vgg11):
    # resnet18 conv1 (7×7, stride 2, padding 3): row y sees rows [2y - 3, 2y + 4).
    assert receptive_field(resnet18, "conv1", (0, 0), 64) == (0, 0, 4, 4)
    assert receptive_field(resnet18, "conv1", (5, 9), 64) == (15, 7, 22, 14)
    # then max-pooling (3×3, stride 2, padding 1): [4y - 5, 4y + 6).
    assert receptive_field(resnet18, "maxpool", (3, 5), 64) == (15, 7, 26, 18)
    assert receptive_field(resnet18, "maxpool", (15, 15), 64) == (55, 55, 64, 64)
    # vgg11: a 3×3 convolution with padding 1, then 2×2 max-pooling: [2y - 1, 2y + 3).
    assert receptive_field(vgg11, "features.2", (0, 0), 32) == (0, 0, 3, 3)
    assert receptive_field(vgg11, "features.2", (4, 6), 32) == (11, 7, 15, 11)
    # non-square inputs keep rows and columns apart
    assert receptive_field(vgg11, "features.2", (4, 6), (40, 48)) == (11, 7, 15, 11)
    assert receptive_field(vgg11, "features.2", (19, 23), (40, 48)) == (45, 37, 48, 40)
    assert layer_receptive_fields(vgg11, "features.2", (40, 48)).grid == (20, 24)


class Branches(nn.Module):
    """Inception-like branches joined along channels, then a squeeze-excitation gate."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.narrow = nn.Conv2d(4, 4, 1)
        self.wide = nn.Conv2d(4, 4, 5, padding=2)
        self.dilated = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.joined = nn.Conv2d(16, 8, 1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.gated = nn.Identity()

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = torch.cat([self.narrow(x), self.wide(x), self.dilated(x), self.pool(x)], dim=1)
        x = self.joined(x)
        return self.gated(x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True))))


class Shapes(nn.Module):
    """Padding, a crop, joins along the height and the width, a permute that keeps the grid,
    then a transpose of height and width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.padded = nn.Identity()
        self.wide = nn.Conv2d(4, 4, (1, 5), stride=(1, 2))
        self.joined = nn.Identity()
        self.wider = nn.Identity()
        self.turned = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.padded(self.conv(F.pad(x, (2, 0, 1, 1))))
        x = self.wide(x).permute(1, 0, 2, 3).permute(1, 0, 2, 3)
        x = self.joined(torch.cat([x[:, :, 2:], x[:, :, :3]], dim=2))
        x = self.wider(torch.cat([x, x[..., 1:]], dim=3))
        return self.turned(x.transpose(2, 3))


@pytest.mark.parametrize(("model", "layers"), [
    (Branches(), ["stem", "wide", "dilated", "pool", "joined", "gated"]),
    (Shapes(), ["padded", "wide", "joined", "wider"]),
])
def test_branches_gates_padding_and_reshapes_match_the_gradient_support(model, layers):
    check_against_gradient_support(model, layers, size=20)


def test_a_gate_over_the_whole_image_makes_every_unit_see_all_of_it():
    assert receptive_field(Branches(), "gated", (0, 0), 20) == (0, 0, 20, 20)


def test_group_norm_makes_every_unit_see_all_of_its_input():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3))
    assert receptive_field(model, "0", (0, 0), 20) == (0, 0, 3, 3)
    assert receptive_field(model, "1", (0, 0), 20) == (0, 0, 20, 20)
    assert receptive_field(model, "2", (5, 5), 20) == (0, 0, 20, 20)


class Upsampled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.after = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        return self.after(F.interpolate(x, scale_factor=2.0))


def test_an_operation_without_a_rule_refuses_the_layers_after_it():
    model = Upsampled()
    assert receptive_field(model, "conv", (0, 0), 16) == (0, 0, 3, 3)
    with pytest.raises(UnsupportedModelError, match="layer 'after'.*upsample_nearest2d"):
        receptive_field(model, "after", (0, 0), 16)
    with pytest.raises(UnsupportedModelError, match="transpose moves the grid"):
        receptive_field(Shapes(), "turned", (0, 0), 20)


def test_bad_layers_and_positions_are_target_errors(resnet18):
    with pytest.raises(TargetError, match="runs 2 times"):
        receptive_field(TinyCNN(), "relu", (0, 0), 32)
    with pytest.raises(TargetError, match=r"no module named 'layer9'.*nearest: layer"):
        receptive_field(resnet18, "layer9", (0, 0), 32)
    with pytest.raises(TargetError, match="not output one N×C×H×W"):
        receptive_field(resnet18, "fc", (0, 0), 32)
    with pytest.raises(TargetError, match=r"position: \[2, 0\] does not fit .* \[2, 2\]"):
        receptive_field(resnet18, "layer3", (2, 0), 32)
    with pytest.raises(TargetError, match="position"):
        receptive_field(resnet18, "layer3", (-1, 0), 32)


def test_fields_are_traced_once_per_layer_and_size_and_leave_the_model_alone(no_mode_left):
    model = TinyCNN().train()
    first = layer_receptive_fields(model, "conv2", 32)
    assert layer_receptive_fields(model, "conv2", 32) is first
    assert layer_receptive_fields(model, "conv2", 16) is not first
    assert model.training and all(not m._forward_hooks for m in model.modules())
    assert layer_receptive_fields(copy.deepcopy(model), "conv2", 32) is not first
