"""The attribution engine: one forward pass, one backward pass per method and map rank.

`Engine` owns a private, frozen, eval-mode copy of the model it is given, so the caller's
model is never changed and several threads may share one engine.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.errors import UnsupportedModelError
from shared.targets import PREDICTED, LayerTarget, Target
from worker.methods import BackwardRule, get_rule
from worker.relu_override import RuleSwitch, count_rectifiers, override_rectifiers
from worker.targets import LayerTaps, seed_gradients, select

PRECISIONS: dict[str, torch.dtype | None] = {
    "float32": None,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class Coverage:
    """Rectifier applications in the forward pass, and how many the engine's rule covered."""

    relu_calls: int  # rectifiers in the autograd graph of the targets, overridden or not
    overridden: int  # of those, routed through the method's rule
    applied: int  # backward applications of the rule, summed over this method's passes

    @property
    def complete(self) -> bool:
        return self.relu_calls == self.overridden

    def to_json(self) -> dict[str, int]:
        return {"relu_calls": self.relu_calls, "overridden": self.overridden,
                "applied": self.applied}


@dataclass(frozen=True)
class AttributionMap:
    """One map: the method, what it is the gradient of, and the raw float32 C×H×W values."""

    method: str
    target: dict[str, Any]
    values: np.ndarray


@dataclass(frozen=True)
class ImageResult:
    """The prediction for one image and its maps (method-major, then target rank)."""

    predicted_class: int
    score: float
    maps: list[AttributionMap]
    probs: np.ndarray  # the softmax vector (float32), e.g. for the probability of a label


@dataclass(frozen=True)
class BatchResult:
    images: list[ImageResult]
    coverage: dict[str, Coverage]


def model_logits(output: Any) -> torch.Tensor:
    """The N×classes logits from a model's output (a tensor, `.logits`, or a tuple's first)."""
    if hasattr(output, "logits"):
        output = output.logits
    elif isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UnsupportedModelError(
            f"the model's output is {shape}; expected logits of shape [batch, classes]"
        )
    return output


class Engine:
    """Computes attribution maps for batches of preprocessed images."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        precision: str = "float32",
        channels_last: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = channels_last
        model = copy.deepcopy(model).eval().requires_grad_(False).to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.taps = LayerTaps(model)

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def attribute(
        self,
        images: torch.Tensor,
        methods: Sequence[str] = ("gradient",),
        targets: Target | Sequence[Target] = PREDICTED,
        seeds: Sequence[int] | None = None,
    ) -> BatchResult:
        """Maps of `images` (N×C×H×W, preprocessed) for each method and each image's target.

        `seeds` are the images' item seeds, for methods that draw random numbers (none of
        these three do)."""
        rules = [get_rule(name) for name in dict.fromkeys(methods)]
        if not rules:
            raise ValueError("at least one method is required")
        n = images.shape[0]
        per_image = list(targets) if isinstance(targets, Sequence) else [targets] * n
        if len(per_image) != n:
            raise ValueError(f"{len(per_image)} targets for {n} images; give one or one per image")

        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        x = images.detach().to(self.device, torch.float32, memory_format=memory_format)
        x.requires_grad_(True)
        layers = sorted({t.layer for t in per_image if isinstance(t, LayerTarget)})
        switch = RuleSwitch()
        # The gradient's rule is autograd's own: alone, it runs without the override.
        override = (
            override_rectifiers(switch)
            if any(rule.needs_every_rectifier for rule in rules)
            else nullcontext()
        )
        with self.taps.capture(layers) as activations, override:
            with self._autocast():
                logits = model_logits(self.model(x))
        captured = [a for a in activations.values() if a is not None]
        overridden, escaped = count_rectifiers([logits, *captured])
        self._check_rules(rules, switch, overridden, escaped)

        probs = logits.detach().float().softmax(dim=1)
        probs_np = probs.cpu().numpy()
        scores, predicted = probs.max(dim=1)
        selections = select(per_image, logits.detach())
        ranks = max(len(s) for s in selections)
        maps: list[list[AttributionMap]] = [[] for _ in range(n)]
        for m, rule in enumerate(rules):
            switch.rule = rule
            for rank in range(ranks):
                outputs, seed_grads = seed_gradients(selections, rank, logits, activations)
                last = m == len(rules) - 1 and rank == ranks - 1
                (grad,) = torch.autograd.grad(outputs, x, seed_grads, retain_graph=not last)
                values = grad.detach().float().cpu().numpy()
                for i, chosen in enumerate(selections):
                    if rank < len(chosen):
                        maps[i].append(AttributionMap(rule.name, chosen[rank].to_json(), values[i]))

        coverage = {
            rule.name: Coverage(overridden + escaped, overridden, switch.applied[rule.name])
            for rule in rules
        }
        return BatchResult(
            images=[
                ImageResult(int(predicted[i]), float(scores[i]), maps[i], probs_np[i])
                for i in range(n)
            ],
            coverage=coverage,
        )

    @staticmethod
    def _check_rules(
        rules: list[BackwardRule], switch: RuleSwitch, overridden: int, escaped: int
    ) -> None:
        """Refuse a method whose rule would silently not apply to part of the model."""
        strict = [rule.name for rule in rules if rule.needs_every_rectifier]
        if not strict:
            return
        missing = dict(switch.no_rule)
        if switch.other_hardtanh:
            missing["Hardtanh (bounds other than 0, 6)"] = switch.other_hardtanh
        if missing:
            found = ", ".join(f"{name} ({count} calls)" for name, count in sorted(missing.items()))
            raise UnsupportedModelError(
                f"{' and '.join(strict)} define a rule only for ReLU and ReLU6, and this model "
                f"also uses {found}; use the 'gradient' method for this model"
            )
        if escaped:
            raise UnsupportedModelError(
                f"{escaped} of {overridden + escaped} rectifier applications "
                f"escaped the {' and '.join(strict)} rule (an unsupported way of calling ReLU); "
                "refusing to return what would be a plain gradient"
            )
