"""Route every rectifier and gated unit of a forward pass through autograd functions whose
backward rule can be switched between backward passes, and count what was (and was not) routed.

Module hooks (what Captum uses) only see `nn.ReLU` modules; functional calls such as
`F.relu(x, inplace=True)` in GoogLeNet or Inception-v3 escape them and silently keep the
plain gradient. Here a `TorchFunctionMode` sees every call — modules, `F.relu`, `torch.relu`,
`Tensor.relu_`, ReLU6 as `hardtanh(0, 6)`, and the aten ops of exported programs; the gated
units of `worker.engine.gated_units` (GELU, SiLU, Hardswish, Mish, QuickGELU) likewise. Then,
independently of that mode, `rectifier_nodes` walks the autograd graph the forward pass
recorded: any rectifier or gated node autograd made itself (`ReluBackward0`,
`HardtanhBackward0` with bounds 0 and 6, `ThresholdBackward0` at 0, `GeluBackward0`,
`SiluBackward0`, `HardswishBackward0`, `MishBackward0`) escaped the override, and shows up as
`relu_calls > overridden`; `count_plain_applications` counts their backward runs, which
apply the gradient's rule, beside the override's.

Sigmoid, Hardsigmoid and Tanh, the gates of squeeze-and-excitation and gated attention, are
counted apart (`RuleSwitch.gates`) and never overridden: the gated rule keeps their
derivative and names them, the papers' rule refuses them. A gated unit written out as
arithmetic (x·σ(x)) multiplies a gate by its own input, and a sigmoid used as an activation
multiplies nothing: `gate_use` finds both in the autograd graph, so that the gated rule
refuses them rather than treat them as gates.

The mode is thread-local and the switch is per call, so threads sharing one model do not
see each other's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from worker.engine.gated_units import AUTOGRAD_NODES, GatedUnit, gated_call
from worker.engine.graph import nodes_behind
from worker.engine.methods.base import BackwardRule

aten = torch.ops.aten

# Calls that are ReLU: (function, whether it works in place).
_RELU: dict[Any, bool] = {
    F.relu: False,  # in place when called with inplace=True
    torch.relu: False,
    torch.Tensor.relu: False,
    F.relu_: True,
    torch.relu_: True,
    torch.Tensor.relu_: True,
    aten.relu.default: False,
    aten.relu_.default: True,
}
# Calls that are ReLU6: F.relu6 and nn.ReLU6 (which calls hardtanh(x, 0, 6)).
_RELU6: dict[Any, bool] = {
    F.relu6: False,
    torch._C._nn.relu6: False,
    torch._C._nn.relu6_: True,
    aten.relu6.default: False,
    aten.relu6_.default: True,
}
_HARDTANH: dict[Any, bool] = {
    F.hardtanh: False,
    F.hardtanh_: True,
    torch._C._nn.hardtanh: False,
    torch._C._nn.hardtanh_: True,
    aten.hardtanh.default: False,
    aten.hardtanh_.default: True,
}
# Element-wise non-linearities that have no guided-backprop or DeconvNet rule, by the name a
# user knows them by (the gated units, which have one under "rule": "gated", are not here).
# Sigmoid, Hardsigmoid and Tanh are the gates of squeeze-and-excitation and gated attention:
# under "rule": "gated" they keep autograd's derivative (`GATES`), and are counted apart.
_NO_RULE: dict[Any, str] = {}
for _name, _funcs in {
    "ELU": (F.elu, F.elu_, aten.elu.default, aten.elu_.default),
    "SELU": (F.selu, torch.selu, torch.selu_, aten.selu.default),
    "CELU": (F.celu, torch.celu, aten.celu.default),
    "LeakyReLU": (F.leaky_relu, F.leaky_relu_, aten.leaky_relu.default, aten.leaky_relu_.default),
    "PReLU": (F.prelu, torch.prelu, aten.prelu.default, aten._prelu_kernel.default),
    "RReLU": (F.rrelu, F.rrelu_, torch.rrelu, aten.rrelu.default),
    "Hardsigmoid": (F.hardsigmoid, aten.hardsigmoid.default, aten.hardsigmoid_.default),
    "Softplus": (F.softplus, aten.softplus.default),
    "Sigmoid": (torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid_,
                F.sigmoid, aten.sigmoid.default, aten.sigmoid_.default),
    "Tanh": (torch.tanh, torch.Tensor.tanh, torch.tanh_, torch.Tensor.tanh_, F.tanh,
             aten.tanh.default, aten.tanh_.default),
    "Softsign": (F.softsign,),
    "LogSigmoid": (F.logsigmoid, aten.log_sigmoid_forward.default),
    "GLU": (F.glu, aten.glu.default),
}.items():
    for _func in _funcs:
        _NO_RULE[_func] = _name
#: The gates: no rule of their own, autograd's derivative under "rule": "gated".
GATES = ("Sigmoid", "Hardsigmoid", "Tanh")


@dataclass
class RuleSwitch:
    """The backward rule in force for one attribution call, and what the passes counted."""

    rule: BackwardRule | None = None
    applied: Counter = field(default_factory=Counter)  # backward applications, per method
    gated: Counter = field(default_factory=Counter)  # gated units overridden, by name
    gates: Counter = field(default_factory=Counter)  # gates (`GATES`) left as they are, by name
    no_rule: Counter = field(default_factory=Counter)  # other non-linearities without a rule
    other_hardtanh: int = 0  # hardtanh with bounds other than (0, 6): no rule either


class Rectify(torch.autograd.Function):
    """ReLU (upper=None) or ReLU6 (upper=6) whose backward asks the switch for its rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, inplace: bool,
                switch: RuleSwitch) -> torch.Tensor:
        if upper is None:
            out = torch.relu_(x) if inplace else torch.relu(x)
        else:
            out = F.hardtanh(x, 0.0, upper, inplace=inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(out)
        ctx.upper = upper
        ctx.switch = switch
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (out,) = ctx.saved_tensors
        rule = ctx.switch.rule
        if rule is None:
            raise RuntimeError("backward through an overridden rectifier with no rule set")
        ctx.switch.applied[rule.name] += 1
        return rule.rectify(grad, out, ctx.upper), None, None, None


class Gate(torch.autograd.Function):
    """A gated unit y = x·s(x) whose backward asks the switch for its rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, unit: GatedUnit, inplace: bool,
                switch: RuleSwitch) -> torch.Tensor:
        saved = x.clone() if inplace else x  # the rules read the input, which in place is lost
        out = unit.call(x, inplace)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(saved)
        ctx.unit = unit
        ctx.switch = switch
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        rule = ctx.switch.rule
        if rule is None:
            raise RuntimeError("backward through an overridden gated unit with no rule set")
        if not rule.gated:
            raise RuntimeError(f"{rule.name} has no rule for gated units; `Pass.check_rule` "
                               "refuses such a pass before any backward")
        ctx.switch.applied[rule.name] += 1
        return rule.gate(grad, x, ctx.unit).to(x.dtype), None, None, None


def _input_and_inplace(func: Any, args: tuple, kwargs: dict, table: dict[Any, bool]
                       ) -> tuple[torch.Tensor, bool]:
    x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    inplace = table[func] or bool(kwargs.get("inplace", False))
    if func in (F.relu, F.relu6) and len(args) > 1:
        inplace = bool(args[1])
    if func in (F.hardtanh,) and len(args) > 3:
        inplace = bool(args[3])
    return x, inplace


def _hardtanh_bounds(func: Any, args: tuple, kwargs: dict) -> tuple[float, float]:
    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return float(lo), float(hi)


class _OverrideMode(TorchFunctionMode):
    """Replaces each rectifier call by `Rectify` and each gated unit by `Gate`; notes
    non-linearities that have no rule."""

    def __init__(self, switch: RuleSwitch) -> None:
        super().__init__()
        self.switch = switch

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        upper: float | None
        if func in _RELU:
            upper, table = None, _RELU
        elif func in _RELU6:
            upper, table = 6.0, _RELU6
        elif func in _HARDTANH and _hardtanh_bounds(func, args, kwargs) == (0.0, 6.0):
            upper, table = 6.0, _HARDTANH
        elif (gated := gated_call(func, args, kwargs)) is not None:
            unit, x, inplace = gated
            self.switch.gated[unit.name] += 1
            return Gate.apply(x, unit, inplace, self.switch)
        else:
            if func in _HARDTANH:
                self.switch.other_hardtanh += 1
            elif _NO_RULE.get(func) in GATES:
                self.switch.gates[_NO_RULE[func]] += 1
            elif func in _NO_RULE:
                self.switch.no_rule[_NO_RULE[func]] += 1
            return func(*args, **kwargs)
        x, inplace = _input_and_inplace(func, args, kwargs, table)
        return Rectify.apply(x, upper, inplace, self.switch)


@contextmanager
def override_rectifiers(switch: RuleSwitch) -> Iterator[None]:
    """Within the block, rectifiers and gated units run through `Rectify` and `Gate`, with
    `switch`'s rule in backward."""
    with _OverrideMode(switch):
        yield


_OVERRIDDEN = ("RectifyBackward", "GateBackward")


def _is_plain_rectifier(node: Any) -> bool:
    """Whether an autograd node is a ReLU, ReLU6 or gated unit that autograd recorded itself."""
    name = type(node).__name__
    if name.startswith(("ReluBackward", *AUTOGRAD_NODES)):
        return True
    if name.startswith("HardtanhBackward"):
        return (float(node._saved_min_val), float(node._saved_max_val)) == (0.0, 6.0)
    if name.startswith("ThresholdBackward"):
        return float(node._saved_threshold) == 0.0
    return False


def rectifier_nodes(outputs: list[torch.Tensor]) -> tuple[int, list[Any]]:
    """(overridden, plain): how many rectifier and gated nodes in the autograd graph behind
    `outputs` run through the override, and the ones autograd recorded itself.

    Only rectifiers the outputs depend on are counted: exactly those that shape the maps.
    """
    overridden, plain = 0, []
    for node in nodes_behind(outputs):
        if type(node).__name__ in _OVERRIDDEN:
            overridden += 1
        elif _is_plain_rectifier(node):
            plain.append(node)
    return overridden, plain


_GATE_NODES = ("SigmoidBackward", "HardsigmoidBackward", "TanhBackward")
# Element-wise arithmetic, through which a gated unit written out reaches its input from both
# sides of its product: x·σ(x), ½x·(1 + tanh(√(2/π)(x + 0.044715x³))).
_ARITHMETIC = ("MulBackward", "AddBackward", "SubBackward", "RsubBackward", "DivBackward",
               "PowBackward", "NegBackward")
_REACH = 6  # arithmetic steps followed back from each side of a product


def _sources(edge: tuple[Any, int]) -> set[tuple[Any, int]]:
    """The graph edges (node, output index) that `edge` is computed from by element-wise
    arithmetic within `_REACH` steps, `edge` included."""
    found: set[tuple[Any, int]] = set()
    frontier = [(edge, 0)]
    while frontier:
        (node, index), depth = frontier.pop()
        if (node, index) in found:
            continue
        found.add((node, index))
        if depth < _REACH and type(node).__name__.startswith(_ARITHMETIC):
            frontier.extend(((fn, i), depth + 1) for fn, i in node.next_functions
                            if fn is not None)
    return found


@dataclass(frozen=True)
class GateUse:
    """How the gates (`GATES`) behind a pass's outputs are used, read from its autograd graph."""

    written_out: int  # products of a gate and a tensor its own input is computed from
    lone: Counter  # gates that multiply no other tensor (activations), by name


def _gate_name(node: Any) -> str:
    return GATES[[type(node).__name__.startswith(g) for g in _GATE_NODES].index(True)]


def gate_use(outputs: list[torch.Tensor]) -> GateUse:
    """The gates behind `outputs` that are not gates of another tensor: those in products with
    a tensor their own input is computed from by arithmetic (gated units written out, x·σ(x)
    or GELU's tanh form, which the override cannot see as one unit), and those in no product
    at all (a sigmoid or tanh used as an activation). A gate of squeeze-and-excitation or gated
    attention multiplies a tensor it was not computed from."""
    written = 0
    gates: set[Any] = set()
    multiplying: set[Any] = set()
    for node in nodes_behind(outputs):
        if type(node).__name__.startswith(_GATE_NODES):
            gates.add(node)
        edges = [(fn, i) for fn, i in node.next_functions if fn is not None]
        if type(node).__name__.startswith("MulBackward") and len(edges) == 2:
            found = False
            for gated, other in (edges, edges[::-1]):
                side = [fn for fn, _ in _sources(gated)
                        if type(fn).__name__.startswith(_GATE_NODES)]
                multiplying.update(side)
                found = found or any(_sources(gate.next_functions[0]) & _sources(other)
                                     for gate in side)
            written += found
    return GateUse(written, Counter(_gate_name(g) for g in gates - multiplying))


def count_rectifiers(outputs: list[torch.Tensor]) -> tuple[int, int]:
    """(overridden, escaped): rectifier and gated nodes behind `outputs` (`rectifier_nodes`)."""
    overridden, plain = rectifier_nodes(outputs)
    return overridden, len(plain)


def count_plain_applications(nodes: list[Any], switch: RuleSwitch) -> None:
    """Count each backward run of `nodes` (rectifiers autograd recorded itself) as an
    application of the switch's rule, as `Rectify` counts its own.

    Their backward is autograd's, which is the gradient's rule; a rule that differs refuses
    a pass with such nodes before any backward (`Pass.check_rule`). The hook holds the switch
    only, not the pass, so the graph is freed as soon as the pass is.
    """

    def applied(grad_inputs: Any, grad_outputs: Any) -> None:
        if switch.rule is not None:  # a backward of a method without a rule counts for none
            switch.applied[switch.rule.name] += 1

    for node in nodes:
        node.register_hook(applied)
