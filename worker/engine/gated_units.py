"""The gated units y = x·s(x), every way a model calls them, and their gates and derivatives.

A gated unit multiplies its input by a gate s(x) in [0, 1]: GELU (s = Φ, or its tanh
approximation ½(1 + tanh(√(2/π)(x + 0.044715x³)))), SiLU (s = σ), Hardswish
(s = relu6(x + 3)/6), Mish (s = tanh(softplus(x))) and QuickGELU (s = σ(1.702x)). ReLU is
the unit whose gate is 1[x > 0]. The `"rule": "gated"` of guided backprop and DeconvNet
generalises their ReLU rules to these units (`worker.engine.methods.modified_relu`); here is what
the override (`worker.engine.overrides`) needs to catch them and to compute their backward.

GELU, SiLU, Hardswish and Mish are single calls a `TorchFunctionMode` sees (modules,
functional, in place, and their aten ops in exported programs). QuickGELU is written out as
`x * sigmoid(1.702 * x)`, which is three calls and not one: a QuickGELU *module* of timm or
transformers is swapped, in the engine's private copy, for one that calls
`quick_gelu` below (the same arithmetic, but one call the mode sees). The written-out form
anywhere else stays three calls: guided methods refuse the model, naming its sigmoid under
the papers' rule and, under the gated rule, the product of a gate with its own input
(`worker.engine.overrides.gate_use`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function_unary

aten = torch.ops.aten
_nn = torch._C._nn
QUICK_GELU_SCALE = 1.702


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x·σ(1.702x), as one call that a torch function mode sees (written out it is three)."""
    if has_torch_function_unary(x):
        return handle_torch_function(quick_gelu, (x,), x)
    return x * torch.sigmoid(QUICK_GELU_SCALE * x)


class QuickGELU(nn.Module):
    """QuickGELU (Radford et al. 2021, CLIP) through `quick_gelu`, so the override sees it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quick_gelu(x)


def _autograd_derivative(function: Callable[[torch.Tensor], torch.Tensor]
                         ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """grad · dy/dx as autograd computes it for `function` written out."""
    def derivative(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (found,) = torch.autograd.grad(function(leaf), leaf, grad)
        return found
    return derivative


@dataclass(frozen=True)
class GatedUnit:
    """One gated unit: its forward as the model computes it, its gate s, and autograd's
    derivative (what the plain gradient passes back)."""

    name: str
    call: Callable[[torch.Tensor, bool], torch.Tensor]  # (x, in place) -> x·s(x)
    gate: Callable[[torch.Tensor], torch.Tensor]  # x -> s(x)
    derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (grad, x) -> grad_in


def _gelu_tanh_gate(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


GELU = GatedUnit(
    "GELU",
    lambda x, inplace: _nn.gelu_(x) if inplace else _nn.gelu(x),
    lambda x: 0.5 * (1 + torch.erf(x * math.sqrt(0.5))),
    lambda grad, x: aten.gelu_backward(grad, x),
)
GELU_TANH = GatedUnit(
    "GELU (tanh)",
    lambda x, inplace: (_nn.gelu_(x, approximate="tanh") if inplace
                        else _nn.gelu(x, approximate="tanh")),
    _gelu_tanh_gate,
    lambda grad, x: aten.gelu_backward(grad, x, approximate="tanh"),
)
SILU = GatedUnit(
    "SiLU",
    lambda x, inplace: _nn.silu_(x) if inplace else _nn.silu(x),
    torch.sigmoid,
    lambda grad, x: aten.silu_backward(grad, x),
)
HARDSWISH = GatedUnit(
    "Hardswish",
    lambda x, inplace: _nn.hardswish_(x) if inplace else _nn.hardswish(x),
    lambda x: (x + 3).clamp(0, 6) / 6,
    lambda grad, x: aten.hardswish_backward(grad, x),
)
MISH = GatedUnit(
    "Mish",
    lambda x, inplace: _nn.mish_(x) if inplace else _nn.mish(x),
    lambda x: torch.tanh(F.softplus(x)),
    lambda grad, x: aten.mish_backward(grad, x),
)
QUICK_GELU = GatedUnit(
    "QuickGELU",
    lambda x, inplace: quick_gelu(x),
    lambda x: torch.sigmoid(QUICK_GELU_SCALE * x),
    _autograd_derivative(quick_gelu),
)
UNITS: tuple[GatedUnit, ...] = (GELU, GELU_TANH, SILU, HARDSWISH, MISH, QUICK_GELU)
#: The units by name, for messages: "GELU, GELU (tanh), SiLU, ...".
UNIT_NAMES = ", ".join(unit.name for unit in UNITS)

# Calls that are a gated unit: (unit, whether it works in place). GELU's unit depends on its
# `approximate` argument (None here).
_CALLS: dict[Any, tuple[GatedUnit | None, bool]] = {
    _nn.gelu: (None, False),  # F.gelu
    _nn.gelu_: (None, True),
    aten.gelu.default: (None, False),
    aten.gelu_.default: (None, True),
    quick_gelu: (QUICK_GELU, False),
}
for _unit, (_functional, _out_of_place, _in_place, _aten, _aten_) in {
    SILU: (F.silu, _nn.silu, _nn.silu_, aten.silu.default, aten.silu_.default),
    HARDSWISH: (F.hardswish, _nn.hardswish, _nn.hardswish_, aten.hardswish.default,
                aten.hardswish_.default),
    MISH: (F.mish, _nn.mish, _nn.mish_, aten.mish.default, aten.mish_.default),
}.items():
    _CALLS.update({_functional: (_unit, False), _out_of_place: (_unit, False),
                   _in_place: (_unit, True), _aten: (_unit, False), _aten_: (_unit, True)})

#: Autograd's own nodes of these units: a gated unit that the override did not see.
AUTOGRAD_NODES = ("GeluBackward", "SiluBackward", "HardswishBackward", "MishBackward")


def gated_call(func: Any, args: tuple, kwargs: dict
               ) -> tuple[GatedUnit, torch.Tensor, bool] | None:
    """(unit, input, in place) when `func(*args, **kwargs)` is a gated unit, else None."""
    found = _CALLS.get(func)
    if found is None:
        return None
    unit, inplace = found
    if unit is None:
        unit = {"none": GELU, "tanh": GELU_TANH}.get(kwargs.get("approximate", "none"))
        if unit is None:
            return None  # an unknown approximation: GELU itself refuses it
    x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    return unit, x, inplace or bool(kwargs.get("inplace", False))


# QuickGELU modules that compute x·σ(1.702x) written out, by their qualified class names (so
# that none of these libraries needs importing to recognise them).
WRITTEN_OUT_QUICK_GELU = frozenset({
    "timm.layers.activations.QuickGELU",
    "transformers.activations.QuickGELUActivation",
})


def catch_written_out_units(model: nn.Module) -> int:
    """Swap `model`'s written-out QuickGELU modules for `QuickGELU`; how many were swapped.

    Only for a private copy (the engine's): the model is changed in place.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            kind = type(child)
            if f"{kind.__module__}.{kind.__qualname__}" in WRITTEN_OUT_QUICK_GELU:
                setattr(parent, name, QuickGELU())
                swapped += 1
    return swapped
