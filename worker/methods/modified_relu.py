"""Guided backpropagation and DeconvNet: the two methods that rewrite the rectifier's backward."""

from __future__ import annotations

import torch

from worker.methods.base import BackwardRule, forward_mask_backward


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
    their transposes, which is the ordinary backward of both.
    """

    name = "deconvnet"
    uses_forward_mask = False
