"""Guided backpropagation and DeconvNet: the two methods that rewrite the rectifier's backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from shared.spec.methods import GATED_RULE
from worker.engine.gated_units import UNIT_NAMES
from worker.engine.input_dependence import NO_INPUT_DEPENDENCE
from worker.engine.methods.base import BackwardRule, Maps, Params, forward_mask_backward

if TYPE_CHECKING:
    from worker.engine.call import Call
    from worker.engine.gated_units import GatedUnit


def add_warning(maps: Maps, warning: str) -> None:
    """Append `warning` to every map of every image."""
    for per_image in maps:
        for computed in per_image.values():
            computed.warnings.append(warning)


class ModifiedReluRule(BackwardRule):
    """Passes back only positive gradients; subclasses decide whether the forward mask applies.

    With `"rule": "gated"` the rule also covers the gated units y = x·s(x)
    (`worker.engine.gated_units`), the service's generalisation: the forward mask 1[x > 0], ReLU's
    gate, becomes the unit's gate s(x). On ReLU and ReLU6 it is the paper's rule exactly.
    The gates that are not units x·s(x) (Sigmoid, Hardsigmoid and Tanh, as in
    squeeze-and-excitation) keep autograd's derivative under it, and its outputs name them.
    """

    uses_forward_mask: bool
    #: What a gated unit passes back under the gated rule, as its outputs' warning says.
    gated_formula: str

    def __init__(self, gated: bool = False) -> None:
        self.gated = gated
        self._generalised = self if gated else type(self)(gated=True)

    def rule(self, params: Params) -> ModifiedReluRule:
        """The paper's rule, or its generalisation to gated units for `"rule": "gated"`."""
        return self._generalised if params["rule"] == GATED_RULE else self

    def rectify(self, grad: torch.Tensor, out: torch.Tensor, upper: float | None) -> torch.Tensor:
        positive = grad.clamp(min=0)
        if self.uses_forward_mask:
            return forward_mask_backward(positive, out, upper)
        return positive

    def gate(self, grad: torch.Tensor, x: torch.Tensor, unit: GatedUnit) -> torch.Tensor:
        positive = grad.clamp(min=0)
        if self.uses_forward_mask:
            return unit.gate(x) * positive
        return positive

    def gated_warnings(self, method: str, call: Call) -> list[str]:
        """The warnings every output of `method` under the gated rule carries: the rule's,
        and the gates of the call's shared pass that kept their derivative."""
        assert call.shared is not None
        gates = call.shared.gates_warning(method)
        return [self.gated_warning(method), *([gates] if gates else [])]

    def gated_warning(self, method: str) -> str:
        """The warning every output of `method` under the gated rule carries."""
        return (f'{method}: "rule": "gated" is this service\'s generalisation of the paper\'s '
                f"ReLU rule to the gated units y = x·s(x) ({UNIT_NAMES}): each passes back "
                f"{self.gated_formula}. It is not from the paper; on ReLU and ReLU6 it is the "
                "paper's rule")

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        maps = super().compute(call, params, position)
        if params["rule"] == GATED_RULE:
            for warning in self.gated_warnings(self.name, call):
                add_warning(maps, warning)
        return maps


class GuidedBackprop(ModifiedReluRule):
    """Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net".

    g_in = 1[0 < x (< 6 for ReLU6)] * max(g_out, 0): positive gradients where the forward
    input was positive. Under the gated rule, g_in = s(x) * max(g_out, 0) at a gated unit.
    """

    name = "guided_backprop"
    uses_forward_mask = True
    gated_formula = "s(x)·max(g, 0), g the gradient at its output"


class DeconvNet(ModifiedReluRule):
    """Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks".

    g_in = max(g_out, 0) whatever the forward input (for ReLU and ReLU6 alike, and for the
    gated units under the gated rule); max-pooling routes the signal through the switches
    recorded in the forward pass and convolutions by their transposes, which is the ordinary
    backward of both. Where nothing else on the backward path reads the forward pass, every
    image gets the same map for the same target, and each map says so
    (`worker.engine.input_dependence`).
    """

    name = "deconvnet"
    uses_forward_mask = False
    gated_formula = "max(g, 0), g the gradient at its output, whatever x"

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        maps = super().compute(call, params, position)
        if not call.shared_depends_on_input():
            add_warning(maps, NO_INPUT_DEPENDENCE)
        return maps
