"""Guided backpropagation and DeconvNet: the two methods that rewrite the rectifier's backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.input_dependence import NO_INPUT_DEPENDENCE
from worker.methods.base import BackwardRule, Maps, Params, forward_mask_backward

if TYPE_CHECKING:
    from worker.call import Call


class ModifiedReluRule(BackwardRule):
    """Passes back only positive gradients; subclasses decide whether the forward mask applies."""

    uses_forward_mask: bool

    def rectify(self, grad: torch.Tensor, out: torch.Tensor, upper: float | None) -> torch.Tensor:
        positive = grad.clamp(min=0)
        if self.uses_forward_mask:
            return forward_mask_backward(positive, out, upper)
        return positive


class GuidedBackprop(ModifiedReluRule):
    """Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net".

    g_in = 1[0 < x (< 6 for ReLU6)] * max(g_out, 0): positive gradients where the forward
    input was positive.
    """

    name = "guided_backprop"
    uses_forward_mask = True


class DeconvNet(ModifiedReluRule):
    """Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks".

    g_in = max(g_out, 0) whatever the forward input (for ReLU and ReLU6 alike); max-pooling
    routes the signal through the switches recorded in the forward pass and convolutions by
    their transposes, which is the ordinary backward of both. Where nothing else on the
    backward path reads the forward pass, every image gets the same map for the same target,
    and each map says so (`worker.input_dependence`).
    """

    name = "deconvnet"
    uses_forward_mask = False

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        maps = super().compute(call, params, position)
        if not call.shared_depends_on_input():
            for per_image in maps:
                for computed in per_image.values():
                    computed.warnings.append(NO_INPUT_DEPENDENCE)
        return maps
