"""Every way of calling a rectifier is routed through the switchable rule, and counted."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worker.methods import get_rule
from worker.relu_override import RuleSwitch, count_rectifiers, override_rectifiers

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


@pytest.mark.parametrize(
    ("call", "label"),
    [(F.silu, "SiLU"), (F.gelu, "GELU"), (nn.LeakyReLU(), "LeakyReLU"), (torch.sigmoid, "Sigmoid"),
     (nn.Hardswish(), "Hardswish"), (nn.ELU(), "ELU")],
)
def test_non_linearities_without_a_rule_are_named(call, label):
    switch = RuleSwitch()
    with override_rectifiers(switch):
        y = call(_input().requires_grad_(True))
    assert switch.no_rule == {label: 1}
    assert count_rectifiers([y]) == (0, 0)


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
