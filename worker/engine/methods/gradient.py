"""Vanilla gradient saliency."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.methods.base import BackwardRule, forward_mask_backward

if TYPE_CHECKING:
    from worker.engine.gated_units import GatedUnit


class Gradient(BackwardRule):
    """Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks".

    The plain derivative of the target score with respect to the input pixels: a rectifier
    passes the gradient where its input was in the linear range (0 < x, and x < 6 for ReLU6),
    a gated unit its derivative, as autograd computes it.
    """

    name = "gradient"
    needs_every_rectifier = False
    gated = True

    def rectify(self, grad: torch.Tensor, out: torch.Tensor, upper: float | None) -> torch.Tensor:
        return forward_mask_backward(grad, out, upper)

    def gate(self, grad: torch.Tensor, x: torch.Tensor, unit: GatedUnit) -> torch.Tensor:
        return unit.derivative(grad, x)
