"""Every way of calling a rectifier or gated unit is routed through the switchable rule, and
counted."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from timm.layers.activations import GELUTanh
from torch import nn

from worker.engine.gated_units import QuickGELU, catch_written_out_units
from worker.engine.methods import get_rule
from worker.engine.overrides import (
    GateUse,
    RuleSwitch,
    count_rectifiers,
    gate_use,
    override_rectifiers,
)

aten = torch.ops.aten

RELU_CALLS = {
    "F.relu": lambda x: F.relu(x),
    "F.relu inplace kw": lambda x: F.relu(x, inplace=True),
    "F.relu inplace positional": lambda x: F.relu(x, True),
    "F.relu_": lambda x: F.relu_(x),
    "torch.relu": lambda x: torch.relu(x),
    "torch.relu_": lambda x: torch.relu_(x),
    "Tensor.relu": lambda x: x.relu(),
    "Tensor.relu_": lambda x: x.relu_(),
    "nn.ReLU": lambda x: nn.ReLU()(x),
    "nn.ReLU inplace": lambda x: nn.ReLU(inplace=True)(x),
    "aten.relu": lambda x: aten.relu.default(x),
    "aten.relu_": lambda x: aten.relu_.default(x),
}
RELU6_CALLS = {
    "F.relu6": lambda x: F.relu6(x),
    "F.relu6 inplace": lambda x: F.relu6(x, inplace=True),
    "nn.ReLU6": lambda x: nn.ReLU6()(x),
    "nn.ReLU6 inplace": lambda x: nn.ReLU6(inplace=True)(x),
    "F.hardtanh(0, 6)": lambda x: F.hardtanh(x, 0.0, 6.0),
    "F.hardtanh(0, 6) kw": lambda x: F.hardtanh(x, min_val=0.0, max_val=6.0),
    "nn.Hardtanh(0, 6)": lambda x: nn.Hardtanh(0.0, 6.0)(x),
    "aten.hardtanh(0, 6)": lambda x: aten.hardtanh.default(x, 0.0, 6.0),
}


def _input() -> torch.Tensor:
    x = 4 * torch.randn(64, generator=torch.Generator().manual_seed(0))
    x[:3] = torch.tensor([0.0, 6.0, 8.0])  # the kinks, and a value above ReLU6's clip
    return x


def _run(call, rule_names):
    """Forward `call` once under the override, then one backward pass per rule."""
    leaf = _input().requires_grad_(True)
    grad_out = torch.randn(64, generator=torch.Generator().manual_seed(1))
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = call(leaf * 1)  # a non-leaf, so in-place calls are allowed
    counted = count_rectifiers([y])
    grads = []
    for k, name in enumerate(rule_names):
        switch.rule = get_rule(name)
        (g,) = torch.autograd.grad(y, leaf, grad_out, retain_graph=k < len(rule_names) - 1)
        grads.append(g)
    return y.detach(), grads, switch, counted, grad_out


def _expected(name, x, g, upper):
    linear = (x > 0) if upper is None else (x > 0) & (x < upper)
    return {
        "gradient": torch.where(linear, g, 0.0),
        "guided_backprop": torch.where(linear & (g > 0), g, 0.0),
        "deconvnet": g.clamp(min=0),
    }[name]


@pytest.mark.parametrize(
    ("call", "upper"),
    [(c, None) for c in RELU_CALLS.values()] + [(c, 6.0) for c in RELU6_CALLS.values()],
    ids=list(RELU_CALLS) + list(RELU6_CALLS),
)
def test_each_call_form_is_overridden_counted_and_switchable(call, upper):
    names = ("gradient", "guided_backprop", "deconvnet")
    y, grads, switch, counted, grad_out = _run(call, names)
    x = _input()
    assert torch.equal(y, x.clamp(min=0) if upper is None else x.clamp(0, upper))
    assert counted == (1, 0)  # (overridden, escaped)
    assert dict(switch.applied) == dict.fromkeys(names, 1)
    for name, g in zip(names, grads, strict=True):
        assert torch.equal(g, _expected(name, x, grad_out, upper)), name
    assert torch._C._len_torch_function_stack() == 0


# Every way of calling a gated unit y = x·s(x): (call, its name, the plain function, s(x)).
# The gates are written here from their definitions, not taken from the service.
def _erf_gate(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def _tanh_gate(x):
    return 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def _hardswish_gate(x):
    return torch.minimum(torch.maximum(x + 3, torch.zeros(())), torch.full((), 6.0)) / 6


def _mish_gate(x):
    return torch.tanh(torch.log1p(torch.exp(x)))


def _plain_quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


GELU = ("GELU", F.gelu, _erf_gate)
GELU_TANH = ("GELU (tanh)", lambda x: F.gelu(x, approximate="tanh"), _tanh_gate)
SILU = ("SiLU", F.silu, _sigmoid)
HARDSWISH = ("Hardswish", F.hardswish, _hardswish_gate)
MISH = ("Mish", F.mish, _mish_gate)
QUICK = ("QuickGELU", _plain_quick_gelu, lambda x: _sigmoid(1.702 * x))
GATED_CALLS = {
    "nn.GELU": (lambda x: nn.GELU()(x), GELU),
    "F.gelu": (lambda x: F.gelu(x), GELU),
    "aten.gelu": (lambda x: aten.gelu.default(x), GELU),
    "aten.gelu_": (lambda x: aten.gelu_.default(x), GELU),
    "_nn.gelu_": (lambda x: torch._C._nn.gelu_(x), GELU),
    "nn.GELU(tanh)": (lambda x: nn.GELU(approximate="tanh")(x), GELU_TANH),
    "F.gelu(tanh)": (lambda x: F.gelu(x, approximate="tanh"), GELU_TANH),
    "aten.gelu(tanh)": (lambda x: aten.gelu.default(x, approximate="tanh"), GELU_TANH),
    "timm GELUTanh": (lambda x: GELUTanh()(x), GELU_TANH),
    "nn.SiLU": (lambda x: nn.SiLU()(x), SILU),
    "nn.SiLU inplace": (lambda x: nn.SiLU(inplace=True)(x), SILU),
    "F.silu inplace positional": (lambda x: F.silu(x, True), SILU),
    "aten.silu": (lambda x: aten.silu.default(x), SILU),
    "aten.silu_": (lambda x: aten.silu_.default(x), SILU),
    "nn.Hardswish": (lambda x: nn.Hardswish()(x), HARDSWISH),
    "F.hardswish inplace": (lambda x: F.hardswish(x, inplace=True), HARDSWISH),
    "aten.hardswish": (lambda x: aten.hardswish.default(x), HARDSWISH),
    "aten.hardswish_": (lambda x: aten.hardswish_.default(x), HARDSWISH),
    "nn.Mish": (lambda x: nn.Mish()(x), MISH),
    "nn.Mish inplace": (lambda x: nn.Mish(inplace=True)(x), MISH),
    "aten.mish": (lambda x: aten.mish.default(x), MISH),
    "aten.mish_": (lambda x: aten.mish_.default(x), MISH),
    "QuickGELU (swapped in)": (lambda x: QuickGELU()(x), QUICK),
}
GATED_RULES = ("gradient", "guided_backprop", "deconvnet")


def _gated_rule(name):
    return get_rule(name).rule({"rule": "gated"})


@pytest.mark.parametrize(("call", "unit"), list(GATED_CALLS.values()), ids=list(GATED_CALLS))
def test_each_gated_call_form_is_overridden_counted_and_switchable(call, unit):
    label, plain, gate = unit
    leaf = _input().requires_grad_(True)
    grad_out = torch.randn(64, generator=torch.Generator().manual_seed(1))
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = call(leaf * 1)  # a non-leaf, so in-place calls are allowed
    assert torch.equal(y.detach(), plain(_input()))
    assert count_rectifiers([y]) == (1, 0)  # (overridden, escaped)
    assert switch.gated == {label: 1} and not switch.no_rule
    grads = {}
    for k, name in enumerate(GATED_RULES):
        switch.rule = _gated_rule(name)
        (grads[name],) = torch.autograd.grad(y, leaf, grad_out, retain_graph=k < 2)
    assert dict(switch.applied) == dict.fromkeys(GATED_RULES, 1)
    x = _input().requires_grad_(True)
    (autograd,) = torch.autograd.grad(plain(x * 1), x, grad_out)
    torch.testing.assert_close(grads["gradient"], autograd, rtol=0, atol=0)
    x = _input()
    torch.testing.assert_close(grads["guided_backprop"], gate(x) * grad_out.clamp(min=0),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads["deconvnet"], grad_out.clamp(min=0), rtol=0, atol=0)
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("name", ["guided_backprop", "deconvnet"])
def test_the_papers_rule_never_runs_through_a_gated_unit(name):
    leaf = _input().requires_grad_(True)
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = F.gelu(leaf)
    switch.rule = get_rule(name)
    with pytest.raises(RuntimeError, match="no rule for gated units"):
        torch.autograd.grad(y.sum(), leaf)


@pytest.mark.parametrize("unit", [GELU, GELU_TANH, SILU, HARDSWISH, MISH],
                         ids=lambda u: u[0])
def test_the_graph_walk_counts_gated_units_autograd_recorded_itself(unit):
    """Without the override, autograd's own gated nodes are the escapes."""
    y = unit[1](_input().requires_grad_(True))
    assert count_rectifiers([y]) == (0, 1)


def test_a_gated_unit_hidden_from_torch_function_is_an_escape():
    with override_rectifiers(RuleSwitch()):
        with torch._C.DisableTorchFunction():
            y = F.silu(_input().requires_grad_(True))
    assert count_rectifiers([y]) == (0, 1)


@pytest.mark.parametrize(("module", "name"), [("timm.layers.activations", "QuickGELU"),
                                              ("transformers.activations", "QuickGELUActivation")])
def test_written_out_quick_gelu_modules_are_swapped_for_one_call(module, name):
    written_out = getattr(pytest.importorskip(module), name)
    shared = written_out()
    model = nn.Sequential(nn.Linear(4, 4), shared, nn.Sequential(nn.Linear(4, 4), shared))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    before = model(x)
    assert catch_written_out_units(model) == 2
    assert isinstance(model[1], QuickGELU) and isinstance(model[2][1], QuickGELU)
    assert torch.equal(model(x), before)
    switch = RuleSwitch()
    with override_rectifiers(switch):
        model(x)
    assert switch.gated == {"QuickGELU": 2} and not switch.no_rule


@pytest.mark.parametrize(("call", "label"),
                         [(nn.LeakyReLU(), "LeakyReLU"), (nn.ELU(), "ELU"),
                          (nn.Softplus(), "Softplus")],
                         ids=["LeakyReLU", "ELU", "Softplus"])
def test_non_linearities_without_a_rule_are_named(call, label):
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = call(_input().requires_grad_(True))
    assert switch.no_rule == {label: 1} and not switch.gates
    assert count_rectifiers([y]) == (0, 0)


@pytest.mark.parametrize(
    ("call", "label"),
    [(torch.sigmoid, "Sigmoid"), (nn.Hardsigmoid(), "Hardsigmoid"), (torch.tanh, "Tanh"),
     (lambda x: x * torch.sigmoid(1.702 * x), "Sigmoid")],  # QuickGELU written out
    ids=["Sigmoid", "Hardsigmoid", "Tanh", "x*sigmoid(1.702x)"],
)
def test_gates_are_counted_apart_by_name(call, label):
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = call(_input().requires_grad_(True))
    assert switch.gates == {label: 1} and not switch.no_rule
    assert count_rectifiers([y]) == (0, 0)


def _gelu_tanh_written_out(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


_WEIGHT = torch.randn(4, 4, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize(("call", "written_out", "lone"), [
    (lambda x: x * torch.sigmoid(x), 1, {}),
    (lambda x: torch.sigmoid(1.702 * x) * x, 1, {}),
    (_gelu_tanh_written_out, 1, {}),
    (lambda x: x * torch.sigmoid(x @ _WEIGHT), 0, {}),  # a gate of x, as squeeze-and-excitation
    (lambda x: (x + 1) * F.hardsigmoid(x.relu() @ _WEIGHT), 0, {}),
    (lambda x: torch.sigmoid(x) @ _WEIGHT, 0, {"Sigmoid": 1}),  # an activation
    (lambda x: torch.tanh(x) + x * torch.sigmoid(x @ _WEIGHT), 0, {"Tanh": 1}),
], ids=["x*sigmoid(x)", "sigmoid(1.702x)*x", "GELU tanh", "gate", "hardsigmoid gate",
        "sigmoid activation", "tanh activation beside a gate"])
def test_gate_use_tells_gates_from_written_out_units_and_activations(call, written_out, lone):
    y = call(_input().reshape(-1, 4).requires_grad_(True))
    assert gate_use([y]) == GateUse(written_out, Counter(lone))


def test_other_hardtanh_bounds_are_not_a_relu6():
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = F.hardtanh(_input().requires_grad_(True))
    assert torch.equal(y.detach(), _input().clamp(-1, 1))
    assert switch.other_hardtanh == 1 and count_rectifiers([y]) == (0, 0)


def test_a_relu_hidden_from_torch_function_is_found_in_the_autograd_graph():
    with override_rectifiers(RuleSwitch()):
        with torch._C.DisableTorchFunction():
            y = torch.relu(_input().requires_grad_(True))
    assert count_rectifiers([y]) == (0, 1)


@pytest.mark.parametrize(
    ("call", "escaped"),
    [(lambda x: F.threshold(x, 0.0, 0.0), 1), (lambda x: F.threshold(x, 1.0, 0.0), 0),
     (lambda x: F.hardtanh(x, 0.0, 6.0), 1), (lambda x: F.hardtanh(x), 0)],
    ids=["threshold-0", "threshold-1", "hardtanh-0-6", "hardtanh-default"],
)
def test_the_graph_walk_counts_only_plain_rectifiers(call, escaped):
    """Without the override, autograd's own rectifier nodes are the escapes."""
    y = call(_input().requires_grad_(True))
    assert count_rectifiers([y]) == (0, escaped)


def test_backward_without_a_rule_fails_loudly():
    leaf = _input().requires_grad_(True)
    with override_rectifiers(RuleSwitch()):
        y = F.relu(leaf * 1)
    with pytest.raises(RuntimeError, match="no rule set"):
        torch.autograd.grad(y.sum(), leaf)


def test_modes_are_popped_when_the_block_raises():
    with pytest.raises(ZeroDivisionError), override_rectifiers(RuleSwitch()):
        assert torch._C._len_torch_function_stack() == 1
        1 / 0  # noqa: B018
    assert torch._C._len_torch_function_stack() == 0
