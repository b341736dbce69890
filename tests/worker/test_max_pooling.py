"""Which layers a max-pooling precedes, read from the autograd graph: modules, functional calls
and ops, in the main path or a branch; never a pooling the layer does not depend on. The model
is left unhooked, and the record keeps the answer per layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from engine_testing import seeded_architecture
from torch import nn

from shared.models.builtin import EFFICIENTNET_LITE0_SPEC
from shared.spec.layers import ModelLayers
from shared.spec.top_activations import default_projection
from shared.state.modelstore import ModelRecord
from worker.engine.max_pooling import max_pool_before
from worker.kinds.top_activations.feature_maps import model_layers


def vgg_style() -> nn.Module:
    """conv, ReLU, max-pool, conv, ReLU, max-pool, then a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()


class Functional(nn.Module):
    """A max-pool as a functional call between two modules, and a global max (`amax`) head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(F.max_pool2d(torch.relu(self.conv1(x)), 2))
        return self.fc(x.amax(dim=(2, 3)))


class Branches(nn.Module):
    """`a` and `b` side by side; only `b` max-pools (then upsamples back). `mixed` adds them;
    `plain` sees `a` alone."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveMaxPool2d(16),
                               nn.Upsample(scale_factor=2))
        self.plain = nn.Conv2d(4, 4, 1)
        self.mixed = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        plain, mixed = self.plain(a), self.mixed(a + self.b(x))
        return self.fc(torch.cat([plain.mean((2, 3)), mixed.mean((2, 3))], 1))


def test_a_vgg_style_stack_has_max_pooling_after_its_first_pool():
    found = max_pool_before(vgg_style(), 32)
    assert found == {"0": True, "0.0": False, "0.1": False, "0.2": True, "0.3": True,
                     "0.4": True, "0.5": True, "1": True, "2": True}


def test_functional_calls_and_ops_count_as_modules_do():
    found = max_pool_before(Functional(), 32)
    assert found == {"conv1": False, "conv2": True, "fc": True}
    no_pool = max_pool_before(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d(1)), 16)
    assert no_pool == {"0": False, "1": True}


@pytest.mark.parametrize("pool", [
    lambda x: F.max_pool1d(x.flatten(2), 2), lambda x: F.max_pool2d(x, 2),
    lambda x: F.adaptive_max_pool2d(x, 3), lambda x: F.adaptive_max_pool1d(x.flatten(2), 3),
    lambda x: F.fractional_max_pool2d(x, 2, output_size=3), lambda x: x.amax((2, 3)),
    lambda x: x.max(dim=1)[0], lambda x: x.max(),
    lambda x: F.max_pool3d(x[None], (1, 2, 2)),
])
def test_every_kind_of_max_pooling_is_found(pool):
    from worker.engine.max_pooling import is_max_pool, pooled_nodes

    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    out = pool(x) * 2
    assert pooled_nodes([out.grad_fn])[out.grad_fn]
    plain = (x.relu() * 2).grad_fn
    assert pooled_nodes([plain])[plain] is False
    assert not is_max_pool(torch.maximum(x, x.flip(3)).grad_fn)


def test_a_pooling_counts_only_for_the_layers_that_depend_on_it():
    found = max_pool_before(Branches(), 32)
    assert (found["a"], found["plain"]) == (False, False)
    assert found["b.0"] is False
    assert (found["b.1"], found["b"], found["mixed"], found["fc"]) == (True, True, True, True)


@pytest.mark.parametrize(("name", "before", "after"), [
    ("resnet18", ["conv1", "bn1", "relu"], ["maxpool", "layer1.0.conv1", "layer4", "fc"]),
    ("vgg11", ["features.0", "features.1"], ["features.2", "features.3", "classifier"]),
])
def test_torchvision_models_with_max_pooling(name, before, after, request):
    model = request.getfixturevalue(name)
    found = max_pool_before(model, 32)
    assert [found[n] for n in before] == [False] * len(before)
    assert [found[n] for n in after] == [True] * len(after)
    assert all(found[n] for n in found if n not in before)


def test_a_mobilenet_has_none_anywhere():
    found = max_pool_before(seeded_architecture("mobilenet_v2"), 32)
    assert len(found) > 100 and not any(found.values())


def test_the_builtin_model_has_none_so_its_default_projection_is_guided_backprop():
    """EfficientNet-Lite0 (seeded, at 32 px) pools by averages only: every layer's default
    projection is guided backpropagation, with the reason."""
    model = seeded_architecture(EFFICIENTNET_LITE0_SPEC["architecture"])
    found = max_pool_before(model, 32)
    assert len(found) > 100 and not any(found.values())
    layers = model_layers(model, 32).with_max_pooling(found)
    for name in (layers.default, "conv_stem", "blocks.3.0.conv_pw"):
        method, reason = default_projection(layers, name)
        assert method == "guided_backprop"
        assert reason.startswith(f"guided_backprop: the default, as no max-pooling precedes "
                                 f"layer {name!r}")


def test_the_model_is_left_as_it_was():
    model = vgg_style()
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    max_pool_before(model, 32)
    assert all(not m._forward_hooks for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert not model.training


def test_the_record_keeps_it_per_layer_and_an_old_record_reads_as_not_known():
    model = vgg_style()
    layers = model_layers(model, 32).with_max_pooling(max_pool_before(model, 32))
    assert layers.max_pooling_recorded
    back = ModelLayers.from_json(layers.to_json())
    assert {n: layer.max_pool_before for n, layer in back.layers.items()} == {
        n: layer.max_pool_before for n, layer in layers.layers.items()}
    assert back.layers["0.0"].max_pool_before is False
    assert back.layers["0.3"].max_pool_before is True
    listed = {entry["name"]: entry for entry in back.api_json()["layers"]}
    assert listed["0.3"]["max_pool_before"] is True and listed["0.3"]["usable"]

    old = layers.to_json()
    for module in old["modules"].values():
        module.pop("max_pool_before")
    older = ModelLayers.from_json(old)
    assert not older.max_pooling_recorded
    assert {layer.max_pool_before for layer in older.layers.values()} == {None}
    assert {e["max_pool_before"] for e in older.api_json()["layers"]} == {None}


def test_a_record_of_before_layouts_has_no_layers(tmp_path):
    from shared.spec.model import parse_model_spec

    spec = parse_model_spec({"name": "m", "architecture": "resnet18", "num_classes": 10})
    record = ModelRecord(spec, "safetensors", "k", "0" * 64, 1, "t", False)
    raw = record.to_json()
    raw.pop("layers")
    assert not ModelRecord.from_json(raw).layers.known
