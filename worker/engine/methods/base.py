"""The bases of the attribution methods.

`Method` is what the engine calls: it names the rectifier rule its backward passes use and
computes maps from a `worker.engine.call.Call`. Most methods differentiate the same forward pass and
differ only in the gradient a ReLU (or ReLU6, or a gated unit such as GELU) lets through:
they are a `BackwardRule`, whose map is the input gradient under that rule. Convolutions,
pooling and everything else keep their ordinary backward, which for max-pooling is
DeconvNet's "switches" (the gradient goes to the arg-max).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from worker.engine.call import Call
    from worker.engine.gated_units import GatedUnit

Params = Mapping[str, Any]


@dataclass
class Computed:
    """One map of one image: its float32 values, and what the method reports beside them."""

    values: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


#: Per image of a call, its maps by rank (the first target, the second of a top-k, ...).
Maps = list[dict[int, Computed]]


class Method:
    """One attribution method, by its public name in `shared.spec.methods.METHODS`."""

    name: str = ""
    #: Whether it is computed from the call's one forward pass (else from passes of its own).
    shares_forward: bool = True
    #: Whether its passes take a backward pass (occlusion's only run forward).
    backward: bool = True
    #: Whether it reads the shared pass's attention probabilities (`worker.engine.attention`).
    attention: bool = False

    def rule(self, params: Params) -> BackwardRule | None:
        """The rectifier rule of its backward passes; None for a method with no ReLU rule."""
        raise NotImplementedError

    def layers(self, params: Params, call: Call) -> tuple[str, ...]:
        """Modules whose outputs the shared forward pass must record for this method."""
        return ()

    def check(self, params: Params, call: Call, position: int) -> None:
        """Refuse parameters that cannot work on these images, before anything runs."""

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        """The maps of every image of the call, by rank."""
        raise NotImplementedError


class BackwardRule(Method):
    """A method whose map is the input gradient with its own rule at every rectifier."""

    #: Whether the method is wrong unless every rectifier of the forward pass is overridden.
    needs_every_rectifier: bool = True
    #: Whether it has a rule for the gated units y = x·s(x) (`gate`), else refuses them.
    gated: bool = False

    def rectify(self, grad: torch.Tensor, out: torch.Tensor, upper: float | None) -> torch.Tensor:
        """Gradient at a rectifier's input, given the gradient at its output and its output.

        `upper` is None for ReLU and the clip value (6) for ReLU6.
        """
        raise NotImplementedError

    def gate(self, grad: torch.Tensor, x: torch.Tensor, unit: GatedUnit) -> torch.Tensor:
        """Gradient at a gated unit's input `x`, given the gradient at its output."""
        raise NotImplementedError

    def rule(self, params: Params) -> BackwardRule:
        return self

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        return call.input_gradient_maps(self.rule(params))


def add_rows(into: torch.Tensor, rows: torch.Tensor, images: torch.Tensor) -> None:
    """into[i] += the sum of the rows of image i; a pass's rows come image by image."""
    ids, counts = torch.unique_consecutive(images, return_counts=True)
    for i, part in zip(ids.tolist(), rows.split(counts.tolist()), strict=True):
        into[i] += part.flatten(1).sum(0).view(into.shape[1:])  # 2-D: a far faster reduction


def forward_mask_backward(
    grad: torch.Tensor, out: torch.Tensor, upper: float | None
) -> torch.Tensor:
    """`grad` where the rectifier was in its linear range (0 < x, and x < upper for ReLU6), else 0.

    Read from the output, which equals the input exactly where the mask is one.
    """
    if upper is None:
        return torch.ops.aten.threshold_backward(grad, out, 0)
    return torch.ops.aten.hardtanh_backward(grad, out, 0.0, upper)
