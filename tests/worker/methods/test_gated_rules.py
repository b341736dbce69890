"""The gated rules ("rule": "gated") of guided backprop, DeconvNet and Guided Grad-CAM.

On ReLU models they are the papers' rules exactly. On models with gated units y = x·s(x)
they equal a reference written here: every activation module of a copy of the model is
replaced by a custom autograd function whose backward is the rule, from its definition
(s(x)·max(g, 0) for guided backprop, max(g, 0) for DeconvNet), with ReLU as the unit whose
gate is 1[x > 0]. The reference swaps modules, where the engine overrides calls, and counts
what it swapped, which cross-checks the engine's coverage.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import timm
import torch
from attribution_refs import class_gradient
from engine_testing import seeded_architecture
from timm.layers.activations import GELUTanh
from timm.layers.activations import QuickGELU as TimmQuickGELU
from torch import nn

from shared.errors import UnsupportedModelError
from shared.spec.methods import method_spec
from shared.spec.targets import ClassTarget, TopKTarget
from worker.engine.core import Engine
from worker.engine.gated_units import QuickGELU
from worker.engine.input_dependence import NO_INPUT_DEPENDENCE

CLASSES = [1, 3]
RULE_METHODS = ("guided_backprop", "deconvnet", "guided_gradcam")


def _gated(name: str, **params):
    return method_spec(name, rule="gated", **params)


def _x(n: int = 2, side: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _maps(result, position: int) -> np.ndarray:
    return np.stack([image.maps[position].values for image in result.images])


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def is_gated_warning(text: str, method: str) -> bool:
    return (text.startswith(f"{method}: ") and "generalisation" in text
            and "not from the paper" in text)


# --- the reference ---------------------------------------------------------------------------

def _gates(module: nn.Module):
    """s(x) of an activation module, written from its definition; None if it is not one."""
    erf = lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2)))  # noqa: E731
    tanh = lambda x: 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))  # noqa: E731
    if isinstance(module, nn.GELU):
        return erf if module.approximate == "none" else tanh
    return {
        GELUTanh: tanh,
        nn.SiLU: lambda x: 1 / (1 + torch.exp(-x)),
        nn.Hardswish: lambda x: (x + 3).clamp(0, 6) / 6,
        nn.Mish: lambda x: torch.tanh(torch.log1p(torch.exp(x))),
        TimmQuickGELU: lambda x: 1 / (1 + torch.exp(-1.702 * x)),
        nn.ReLU: lambda x: (x > 0).to(x.dtype),
    }.get(type(module))


class _RefGate(torch.autograd.Function):
    """y = x·s(x) forward; guided backprop's or DeconvNet's gated rule in backward."""

    @staticmethod
    def forward(ctx, x, gate, method):
        ctx.save_for_backward(x)
        ctx.gate, ctx.method = gate, method
        return x * gate(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        positive = torch.where(grad > 0, grad, torch.zeros_like(grad))
        if ctx.method == "deconvnet":
            return positive, None, None
        return ctx.gate(x) * positive, None, None


class _RefUnit(nn.Module):
    def __init__(self, gate, method: str, calls: list[int]) -> None:
        super().__init__()
        self.gate, self.method, self.calls = gate, method, calls

    def forward(self, x):
        self.calls[0] += 1
        return _RefGate.apply(x, self.gate, self.method)


def reference(model: nn.Module, x: torch.Tensor, method: str, classes: list[int] = CLASSES
              ) -> tuple[np.ndarray, int]:
    """Guided backprop's or DeconvNet's gated map of `x` for `classes` (one per image), and
    how many units ran."""
    copied = copy.deepcopy(model).eval().requires_grad_(False)
    calls = [0]
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            gate = _gates(child)
            if gate is not None:
                setattr(parent, name, _RefUnit(gate, method, calls))
    grad = class_gradient(copied, x, classes)
    return grad.numpy(), calls[0]


# --- the models -----------------------------------------------------------------------------

class AllUnits(nn.Module):
    """Every gated unit once, a ReLU, and max-pooling's switches between them."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1)
                                   for i in range(7))
        self.acts = nn.ModuleList([nn.GELU(), nn.GELU(approximate="tanh"),
                                   nn.SiLU(inplace=True), nn.Hardswish(), nn.Mish(),
                                   TimmQuickGELU(), nn.ReLU(inplace=True)])
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        for i, (conv, act) in enumerate(zip(self.convs, self.acts, strict=True)):
            x = act(2 * conv(x))  # pre-activations over the units' curved range
            if i == 2:
                x = self.pool(x)
        return self.fc(x.mean((2, 3)))


def _timm(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=4, **kwargs).eval()


GATED_MODELS = {  # name: (model, what it has)
    "all units": lambda: (torch.manual_seed(0), AllUnits().eval())[1],
    "timm test_convnext (GELU tanh)": lambda: _timm("test_convnext", ls_init_value=1.0),
    "timm test_convnext3 (SiLU)": lambda: _timm("test_convnext3", ls_init_value=1.0),
    "timm test_vit (GELU)": lambda: _timm("test_vit", img_size=32),
    "timm test_vit (QuickGELU)": lambda: _timm("test_vit", img_size=32, act_layer="quick_gelu"),
}


# --- on ReLU models: the papers' rules, exactly ---------------------------------------------

@pytest.mark.parametrize("architecture", ["resnet18", "vgg11", "mobilenet_v2"])
def test_on_relu_models_the_gated_rule_is_the_papers_rule(architecture, request):
    model = (request.getfixturevalue(architecture) if architecture != "mobilenet_v2"
             else seeded_architecture(architecture))
    x, engine = _x(), Engine(model)
    papers = engine.attribute(x, RULE_METHODS, TopKTarget(2))  # separate passes: no shared
    gated = engine.attribute(x, [_gated(m) for m in RULE_METHODS], TopKTarget(2))  # cache
    for position, method in enumerate(RULE_METHODS):
        assert gated.coverage[position] == papers.coverage[position], method
        assert gated.coverage[position].complete and gated.coverage[position].applied > 0
    for before, after in zip(papers.images, gated.images, strict=True):
        assert len(before.maps) == len(after.maps) == 2 * len(RULE_METHODS)
        for a, b in zip(before.maps, after.maps, strict=True):
            assert (a.method, a.position, a.target) == (b.method, b.position, b.target)
            assert np.array_equal(a.values, b.values), (a.method, a.target)
            assert np.abs(a.values).max() > 0
            assert is_gated_warning(b.warnings[0], b.method)
            assert b.warnings[1:] == a.warnings  # DeconvNet's input dependence, if any


# --- on gated models: the reference ----------------------------------------------------------

@pytest.mark.parametrize("build", list(GATED_MODELS.values()), ids=list(GATED_MODELS))
def test_on_gated_models_the_maps_equal_the_reference_and_coverage_is_complete(build):
    model, x = build(), _x()
    methods = ["gradient", _gated("guided_backprop"), _gated("deconvnet")]
    engine, targets = Engine(model), [ClassTarget(c) for c in CLASSES]
    result = engine.attribute(x, methods, targets)
    gradient = class_gradient(model, x, CLASSES).numpy()
    assert _relative_error(_maps(result, 0), gradient) <= 1e-5  # autograd's derivative
    alone = engine.attribute(x, ["gradient"], targets)  # a pass without the override
    assert np.array_equal(_maps(result, 0), _maps(alone, 0))
    for position, method in enumerate(methods[1:], start=1):
        expected, units = reference(model, x, method.name)
        got = _maps(result, position)
        assert _relative_error(got, expected) <= 1e-4, method.name
        assert _relative_error(got, gradient) > 1e-2  # the rule made a difference
        coverage = result.coverage[position]
        assert coverage.relu_calls == coverage.overridden == units > 0
        assert coverage.applied == units  # one backward pass over every unit
        for image in result.images:
            (warning,) = image.maps[position].warnings
            assert is_gated_warning(warning, method.name)
    assert all(image.maps[0].warnings == [] for image in result.images)


class ExportableUnits(nn.Module):
    """The units an exported program keeps as single aten ops (QuickGELU is three there)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 6, 6, 3, padding=1)
                                   for i in range(5))
        self.acts = nn.ModuleList([nn.GELU(), nn.GELU(approximate="tanh"),
                                   nn.SiLU(inplace=True), nn.Hardswish(), nn.Mish()])
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        for conv, act in zip(self.convs, self.acts, strict=True):
            x = act(2 * conv(x))
        return self.fc(nn.functional.max_pool2d(x, 2).mean((2, 3)))


def test_an_exported_programs_aten_units_take_the_gated_rule(tmp_path, no_mode_left):
    from shared.spec.model import ModelSpec
    from worker.models.build import build_model

    torch.manual_seed(0)
    model, x = ExportableUnits().eval(), _x()
    path = tmp_path / "units.pt2"
    batch = {"x": {0: torch.export.Dim("batch")}}  # the engine runs passes of any size
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=batch), str(path))
    program = build_model(ModelSpec(name="units", num_classes=4), path)
    methods = [_gated("guided_backprop"), _gated("deconvnet")]
    result = Engine(program).attribute(x, methods, [ClassTarget(c) for c in CLASSES])
    for position, method in enumerate(methods):
        expected, units = reference(model, x, method.name)  # the eager model's modules
        assert _relative_error(_maps(result, position), expected) <= 1e-4, method.name
        assert result.coverage[position].relu_calls == result.coverage[position].overridden
        assert result.coverage[position].overridden == units == 5


def test_guided_gradcam_is_the_gated_guided_map_times_the_cam_for_every_rank(no_mode_left):
    model, x = GATED_MODELS["all units"](), _x()
    methods = [_gated("guided_gradcam", layer="convs.5"), method_spec("gradcam", layer="convs.5")]
    result = Engine(model).attribute(x, methods, TopKTarget(2))
    assert result.coverage[0].complete and result.coverage[0].applied > 0
    for rank in range(2):
        classes = [image.maps[rank].target["class"] for image in result.images]
        guided, _ = reference(model, x, "guided_backprop", classes)
        cams = np.stack([image.maps[2 + rank].values for image in result.images])
        got = np.stack([image.maps[rank].values for image in result.images])
        assert _relative_error(got, guided * cams) <= 1e-4, rank
        for image in result.images:
            (warning,) = image.maps[rank].warnings
            assert is_gated_warning(warning, "guided_gradcam")
            assert image.maps[2 + rank].warnings == []


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", RULE_METHODS)
def test_the_default_rule_still_refuses_gated_models_and_names_the_option(method, no_mode_left):
    model = GATED_MODELS["timm test_convnext (GELU tanh)"]()
    with pytest.raises(UnsupportedModelError, match="GELU \\(tanh\\) \\(9 calls\\)") as info:
        Engine(model).attribute(_x(), [method])
    assert '"rule": "gated"' in str(info.value)
    with pytest.raises(UnsupportedModelError, match='"rule": "gated"'):
        Engine(model).attribute(_x(), ["gradient", method_spec(method, rule="relu")])


class WrittenOutQuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class WrittenOutGELUTanh(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _units(*acts: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), *acts, nn.Flatten(), nn.LazyLinear(2))


@pytest.mark.parametrize(("build", "match"), [
    (lambda: _units(WrittenOutQuickGELU()), "1 products in this model multiply a gate"),
    (lambda: _units(WrittenOutGELUTanh()), "1 products in this model multiply a gate"),
    (lambda: _units(nn.GELU(), nn.Sigmoid()), "Sigmoid \\(1 calls\\) used as activations"),
    (lambda: _units(nn.Tanh()), "Tanh \\(1 calls\\) used as activations"),
    (lambda: _units(nn.GELU(), nn.ELU()), "ELU \\(1 calls\\)"),
], ids=["QuickGELU written out", "GELU tanh written out", "Sigmoid", "Tanh", "ELU"])
def test_other_units_are_refused_by_name_under_the_gated_rule(build, match, no_mode_left):
    model = build()
    model(_x(1))  # materialise lazy layers
    for method in RULE_METHODS[:2]:
        with pytest.raises(UnsupportedModelError, match=match) as info:
            Engine(model).attribute(_x(1), [_gated(method)])
        assert "'gradient'" in str(info.value)


def test_squeeze_and_excitation_gates_keep_their_derivative_and_are_named(no_mode_left):
    """timm's EfficientNet: SiLU units under the gated rule, the sigmoid gates of its
    squeeze-and-excitation blocks with autograd's derivative, as the reference leaves them;
    the papers' rule refuses the model, naming both."""
    model, x = _timm("test_efficientnet"), _x()
    methods = [_gated("guided_backprop"), _gated("deconvnet")]
    result = Engine(model).attribute(x, methods, [ClassTarget(c) for c in CLASSES])
    gradient = class_gradient(model, x, CLASSES).numpy()
    for position, method in enumerate(methods):
        expected, units = reference(model, x, method.name)
        got = _maps(result, position)
        assert _relative_error(got, expected) <= 1e-4, method.name
        assert _relative_error(got, gradient) > 1e-2
        assert result.coverage[position].overridden == units > 0
        for image in result.images:
            rule, gates = image.maps[position].warnings[:2]
            assert is_gated_warning(rule, method.name)
            assert gates.startswith(f"{method.name}: the gates Sigmoid (") and "derivative" in gates
    with pytest.raises(UnsupportedModelError, match="SiLU .*Sigmoid \\(\\d+ calls\\)"):
        Engine(model).attribute(x, ["guided_backprop"])


# --- warnings and input dependence ------------------------------------------------------------

def test_deconvnets_gated_rule_reads_nothing_of_the_input_and_says_so(no_mode_left):
    """Through gated units, DeconvNet's max(g, 0) ignores x: with no max-pooling, every image
    gets the same map, and each map says so beside the gated rule's warning."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.GELU(), nn.Conv2d(6, 6, 3), nn.SiLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    result = Engine(model).attribute(_x(3), [_gated("deconvnet"), _gated("guided_backprop")],
                                     ClassTarget(1))
    maps = _maps(result, 0)
    np.testing.assert_allclose(maps[1:], np.broadcast_to(maps[0], maps[1:].shape), rtol=1e-5,
                               atol=1e-8)
    guided = _maps(result, 1)
    assert _relative_error(guided[1], guided[0]) > 1e-2  # the gate s(x) reads the input
    for image in result.images:
        deconvnet, guided_map = image.maps
        assert is_gated_warning(deconvnet.warnings[0], "deconvnet")
        assert deconvnet.warnings[1:] == [NO_INPUT_DEPENDENCE]
        assert len(guided_map.warnings) == 1


def test_quick_gelu_is_swapped_in_the_engines_copy_only(no_mode_left):
    model = GATED_MODELS["timm test_vit (QuickGELU)"]()
    before = [type(m) for m in model.modules()]
    engine = Engine(model)
    engine.attribute(_x(1), [_gated("guided_backprop")])
    assert [type(m) for m in model.modules()] == before
    swapped = [type(m) for m in engine.model.modules()]
    assert TimmQuickGELU not in swapped and QuickGELU in swapped
    assert len(swapped) == len(before)
