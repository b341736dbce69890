"""The base of every attribution method: how the backward pass treats a rectifier.

All methods here differentiate the same forward pass; they differ only in the gradient a
ReLU (or ReLU6) lets through. Convolutions, pooling and everything else keep their ordinary
backward, which for max-pooling is DeconvNet's "switches" (the gradient goes to the arg-max).
"""

from __future__ import annotations

import torch


class BackwardRule:
    """One attribution method, defined by the gradient it passes back through a rectifier."""

    name: str = ""
    #: Whether the method is wrong unless every rectifier of the forward pass is overridden.
    needs_every_rectifier: bool = True

    def rectify(self, grad: torch.Tensor, out: torch.Tensor, upper: float | None) -> torch.Tensor:
        """Gradient at a rectifier's input, given the gradient at its output and its output.

        `upper` is None for ReLU and the clip value (6) for ReLU6.
        """
        raise NotImplementedError


def forward_mask_backward(
    grad: torch.Tensor, out: torch.Tensor, upper: float | None
) -> torch.Tensor:
    """`grad` where the rectifier was in its linear range (0 < x, and x < upper for ReLU6), else 0.

    Read from the output, which equals the input exactly where the mask is one.
    """
    if upper is None:
        return torch.ops.aten.threshold_backward(grad, out, 0)
    return torch.ops.aten.hardtanh_backward(grad, out, 0.0, upper)
