"""`layer_shapes`: the feature-map layers a job may name, found without touching the model."""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest
import torch
from toy_patterns import TinyCNN

from shared.errors import SpecError
from shared.spec.top_activations import parse_top_activations
from worker.kinds.top_activations.feature_maps import layer_shapes


def hooked_shapes(model, size):
    """Every module's output shapes over one forward pass, by hooks on a deep copy."""
    frozen = copy.deepcopy(model).eval()
    seen = defaultdict(list)
    for name, module in frozen.named_modules():
        module.register_forward_hook(
            lambda m, a, out, name=name: seen[name].append(
                tuple(out.shape) if isinstance(out, torch.Tensor) else None))
    with torch.no_grad():
        frozen(torch.randn(2, 3, size, size))
    return seen


def test_resnet18_layers_are_every_module_that_outputs_one_feature_map(resnet18):
    shapes = layer_shapes(resnet18, 32)
    seen = hooked_shapes(resnet18, 32)
    expected = {name: out[0][1:] for name, out in seen.items()
                if name and len(out) == 1 and out[0] is not None and len(out[0]) == 4}
    assert shapes == expected
    assert shapes["conv1"] == (64, 16, 16)
    assert shapes["layer4"] == (512, 1, 1)
    assert "fc" not in shapes  # N×classes
    assert "layer1.0.relu" not in shapes  # one ReLU module runs twice per block


def test_a_module_used_twice_has_no_single_feature_map():
    shapes = layer_shapes(TinyCNN(), (32, 24))
    assert "relu" not in shapes
    assert shapes["conv1"] == (8, 32, 24)
    assert shapes["conv3"] == (16, 8, 6)


def test_the_efficientnet_lite0_stem_and_a_block(lite0_model):
    shapes = layer_shapes(lite0_model, 64)
    assert shapes["conv_stem"] == (32, 32, 32)
    assert shapes["blocks.4.1"] == (112, 4, 4)


def test_the_model_is_left_as_it_was(resnet18):
    model = copy.deepcopy(resnet18).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer_shapes(model, 32)
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_an_engine_gives_the_shapes_of_its_model(resnet18, resnet18_engine):
    hooks = sum(len(m._forward_hooks) for m in resnet18_engine.model.modules())
    assert layer_shapes(resnet18_engine, 32) == layer_shapes(resnet18, 32)
    assert sum(len(m._forward_hooks) for m in resnet18_engine.model.modules()) == hooks


def test_the_shapes_let_the_spec_refuse_a_layer_with_the_nearest_names(resnet18):
    shapes = layer_shapes(resnet18, 32)
    with pytest.raises(SpecError, match=r"nearest: layer1\.0\.bn[12], layer1\.0\.bn[12]"):
        parse_top_activations({"layer": "layer1.0.bn", "channels": [0]}, layer_shapes=shapes)
    with pytest.raises(SpecError, match="has 128 channels"):
        parse_top_activations({"layer": "layer2.0.bn1", "channels": [128]},
                              layer_shapes=shapes)
