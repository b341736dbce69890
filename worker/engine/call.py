"""One engine call on one chunk of images: what each method computes its maps from.

The chunk's shared forward pass (when a method needs one), its targets and per-image seeds,
and the means to run passes of its own over rows (noisy copies, path points, occluded
copies) in micro-batches that fit the memory budget, counting coverage as they go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from shared.spec.layers import ModelLayers
from worker.engine.baselines import Normalization
from worker.engine.input_dependence import deconvnet_depends_on_input
from worker.engine.memory import in_micro_batches
from worker.engine.methods.base import BackwardRule, Computed, Maps
from worker.engine.passes import Pass
from worker.engine.targets import LayerTaps, Selection


class Passes(Protocol):
    """What a call and its methods ask of an engine (`worker.engine.core.Engine` is one): the model,
    where it runs, its forward passes and its layers, so that methods never import the engine."""

    model: nn.Module
    device: torch.device
    norm: Normalization
    taps: LayerTaps

    def forward(self, x: torch.Tensor, layers: Sequence[str], *, grad: bool,
                override: bool, attention: bool = False) -> Pass:
        """One forward pass of rows `x`, recording the outputs of `layers`."""
        ...

    def layers(self, x1: torch.Tensor) -> ModelLayers:
        """The model's layers and their layouts, for inputs shaped like `x1`."""
        ...

    def default_layer(self, x1: torch.Tensor, field: str = "layer") -> str:
        """The default Grad-CAM layer; an error naming `field` if the model has none."""
        ...


@dataclass
class CoverageCount:
    """Rectifiers seen by one method's passes: structural counts, and rule applications."""

    relu_calls: int = 0
    overridden: int | None = None
    applied: int = 0

    def add(self, done: Pass, rule: BackwardRule) -> None:
        """Fold in one pass: the rectifiers of its graph, and its backward applications."""
        self.merge(CoverageCount(done.overridden + done.escaped, done.overridden,
                                 done.applied(rule)))

    def merge(self, other: CoverageCount) -> None:
        """Fold in another count: structural counts are per pass, applications add up."""
        self.relu_calls = max(self.relu_calls, other.relu_calls)
        if other.overridden is not None:
            self.overridden = (other.overridden if self.overridden is None
                               else min(self.overridden, other.overridden))
        self.applied += other.applied


@dataclass
class Call:
    """A chunk of images (`x`, on the engine's device) and everything about them."""

    engine: Passes
    x: torch.Tensor
    selections: list[list[Selection]]
    seeds: list[int]
    rows_with_grad: int  # rows a pass with a backward may hold
    rows_without_grad: int  # rows a forward-only pass may hold
    target_layers: tuple[str, ...]
    shared: Pass | None = None
    scores: torch.Tensor | None = None  # ranks×images: each target's score at the image
    coverage: dict[int, CoverageCount] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def norm(self) -> Normalization:
        return self.engine.norm

    @property
    def ranks(self) -> int:
        return max(len(s) for s in self.selections)

    def layer(self, name: str | None) -> str:
        """A `layer` parameter: the named module, or the default Grad-CAM layer for null
        (`Method.check` has refused a model without one)."""
        return self.engine.default_layer(self.x[:1]) if name is None else name

    def count(self, position: int, done: Pass, rule: BackwardRule | None) -> None:
        """Add a pass that a method used to its coverage (nothing for a method with no rule)."""
        if rule is not None:
            self.coverage.setdefault(position, CoverageCount()).add(done, rule)

    def input_gradient_maps(self, rule: BackwardRule) -> Maps:
        """Every image's input gradient under `rule`, by rank, from the shared pass."""
        assert self.shared is not None
        maps: Maps = [{} for _ in self.selections]
        for rank in range(self.ranks):
            grads = self.shared.input_grads(rule, rank)
            for i, chosen in enumerate(self.selections):
                if grads is not None and rank < len(chosen):
                    maps[i][rank] = Computed(grads[i])
        return maps

    def shared_depends_on_input(self) -> bool:
        """Whether DeconvNet's backward from the shared pass's targets can read the input."""
        assert self.shared is not None
        captured = [a for a in self.shared.activations.values() if a is not None]
        return deconvnet_depends_on_input([self.shared.logits, *captured])

    def run_pass(self, rows: torch.Tensor, images: Sequence[int], *, grad: bool,
                 rule: BackwardRule | None = None, layers: Sequence[str] = ()) -> Pass:
        """A pass of its own over `rows`, row j taking the targets of image `images[j]`."""
        override = rule is not None and rule.needs_every_rectifier
        wanted = tuple(dict.fromkeys((*self.target_layers, *layers)))
        done = self.engine.forward(rows, wanted, grad=grad, override=override)
        done.selections = [self.selections[i] for i in images]
        if grad and rule is not None:
            done.check_rule(rule)
        return done

    def target_scores(self, images: torch.Tensor) -> torch.Tensor:
        """ranks×N: each target's score at `images` (one per image of the call), forward only."""
        scores = torch.zeros((self.ranks, len(images)), device=self.device)

        def compute(rows: torch.Tensor, start: int, stop: int) -> None:
            done = self.run_pass(rows, range(start, stop), grad=False)
            scores[:, start:stop] = torch.stack([done.scores(r) for r in range(self.ranks)])

        self.in_micro_batches(len(images), lambda a, b: images[a:b], compute, grad=False)
        return scores

    def in_micro_batches(self, total: int, build: Callable[[int, int], Any],
                         compute: Callable[[Any, int, int], None], *, grad: bool) -> None:
        """Rows 0..total in passes that fit the budget (see `worker.engine.memory`)."""
        size = self.rows_with_grad if grad else self.rows_without_grad
        size = in_micro_batches(total, size, build, compute, self.device)
        if grad:  # after an out-of-memory error, later passes start from the smaller size
            self.rows_with_grad = size
        else:
            self.rows_without_grad = size
