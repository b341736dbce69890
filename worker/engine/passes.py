"""One forward pass over a batch of rows, and the backward passes methods take from it.

A row is one model input: an image, a noisy copy of one, a point on an integration path, an
image with a patch occluded. The rows of a pass are independent (the model is in eval mode),
so one backward pass per map rank gives every row's gradient at once; each backward pass is
cached, so methods that need the same one (guided backprop and Guided Grad-CAM) share it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from shared.errors import TargetError, UnsupportedModelError
from shared.spec.layers import ModelLayers
from worker.engine.attention import AttentionCapture, head_mean
from worker.engine.gated_units import UNIT_NAMES
from worker.engine.methods.base import BackwardRule
from worker.engine.methods.gradient import Gradient
from worker.engine.overrides import (
    GATES,
    RuleSwitch,
    count_plain_applications,
    gate_use,
    override_rectifiers,
    rectifier_nodes,
)
from worker.engine.targets import LayerTaps, Selection, seed_gradients, target_scores

GRADIENT = Gradient()


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


def _calls(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({count} calls)" for name, count in sorted(counts.items()))


class Pass:
    """The forward pass of `x` (rows×C×H×W), kept for backward passes when `grad` is true.

    `override` routes every rectifier and gated unit through the switchable rule, which
    methods with a rule of their own (guided backprop, DeconvNet) need; `layers` are recorded
    on the way, and read in the layouts `model_layers()` gives (asked only when a target
    reads a layer, so a pass without one traces no layouts). `attention` records each global
    self-attention block's probabilities (`worker.engine.attention`), in forward order, in
    `self.attention`: with `grad`, the rows×heads×T×T probabilities themselves (autograd
    keeps them anyway); without, only their head means, rows×T×T, which the forward-only
    memory estimate leaves room for. `attention_means` gives the head means either way.
    """

    def __init__(self, model: nn.Module, taps: LayerTaps, x: torch.Tensor,
                 layers: Sequence[str], *, grad: bool, override: bool,
                 autocast: Callable[[], Any], model_layers: Callable[[], ModelLayers],
                 attention: bool = False) -> None:
        self._model_layers = model_layers
        self._read_layers: ModelLayers | None = None
        self.x = x.detach().requires_grad_(grad)
        self.switch = RuleSwitch()
        self.override = override
        rectifiers = override_rectifiers(self.switch) if override else nullcontext()
        capture = (AttentionCapture(keep=None if grad else head_mean) if attention
                   else nullcontext())
        with torch.set_grad_enabled(grad), taps.capture(layers) as activations, rectifiers:
            with autocast(), capture:
                self.logits = model_logits(model(self.x))
        self.attention = capture.global_attention(len(x)) if attention else []
        self.grad = grad
        self.activations = activations
        self.overridden = self.escaped = 0
        if grad:
            captured = [a for a in activations.values() if a is not None]
            self.overridden, plain = rectifier_nodes([self.logits, *captured])
            self.escaped = len(plain)
            count_plain_applications(plain, self.switch)
        self.selections: list[list[Selection]] = []
        self._cache: dict[tuple[str, str, int], Any] = {}

    def _layers(self) -> ModelLayers:
        """The model's layers and their layouts, read once, for targets that read a layer."""
        if self._read_layers is None:
            self._read_layers = self._model_layers()
        return self._read_layers

    def check_rule(self, rule: BackwardRule) -> None:
        """Refuse a rule that would silently not apply to part of the model."""
        if not rule.needs_every_rectifier:
            return
        missing = dict(self.switch.no_rule)
        if self.switch.other_hardtanh:
            missing["Hardtanh (bounds other than 0, 6)"] = self.switch.other_hardtanh
        if missing:
            raise UnsupportedModelError(
                f"{rule.name} defines a rule only for ReLU, ReLU6 and, with the method "
                f'parameter "rule": "gated", the gated units {UNIT_NAMES} (the gates '
                f"{', '.join(GATES)} keeping their derivative); this model also uses "
                f"{_calls(missing)}: use the 'gradient' method for this model"
            )
        if (self.switch.gated or self.switch.gates) and not rule.gated:
            raise UnsupportedModelError(
                f"{rule.name} defines a rule only for ReLU and ReLU6, and this model also uses "
                f"{_calls(self.switch.gated + self.switch.gates)}; the method parameter "
                f'"rule": "gated" extends it to gated units and keeps the derivative of the '
                "gates (this service's generalisation, not the paper's rule), or use the "
                "'gradient' method"
            )
        if self.escaped:
            raise UnsupportedModelError(
                f"{self.escaped} of {self.overridden + self.escaped} rectifier and gated unit "
                f"applications escaped the {rule.name} rule (an unsupported way of calling "
                "them); refusing to return what would be a plain gradient"
            )
        if self.switch.gates and self.grad:
            captured = [a for a in self.activations.values() if a is not None]
            use = gate_use([self.logits, *captured])
            if use.lone:
                raise UnsupportedModelError(
                    f"{rule.name} has no rule for {_calls(use.lone)} used as activations "
                    f"(multiplying no other tensor); under \"rule\": \"gated\" only gates of "
                    "another tensor (squeeze-and-excitation, gated attention) keep their "
                    "derivative: use the 'gradient' method for this model"
                )
            if use.written_out:
                raise UnsupportedModelError(
                    f"{use.written_out} products in this model multiply a gate "
                    f"({', '.join(GATES)}) by the tensor it was computed from: gated units "
                    "written out as arithmetic (x·sigmoid(x), GELU's tanh form), which "
                    f"{rule.name}'s gated rule cannot see as one unit; build the model with "
                    "nn.SiLU, nn.GELU or nn.Hardswish, or use the 'gradient' method"
                )

    def gates_warning(self, method: str) -> str | None:
        """What the outputs of `method` under the gated rule say about the gates of this
        pass, which kept autograd's derivative; None if it had none."""
        if not self.switch.gates:
            return None
        return (f"{method}: the gates {_calls(self.switch.gates)} (of another tensor, as in "
                "squeeze-and-excitation or gated attention; not units x·s(x)) kept autograd's "
                "derivative under the gated rule")

    def scores(self, rank: int) -> torch.Tensor:
        """Each row's target score for map `rank` (float32; 0 where the row has none)."""
        return target_scores(self.selections, rank, self.logits, self.activations,
                             self._layers)

    def input_grads(self, rule: BackwardRule, rank: int, *, last: bool = False
                    ) -> torch.Tensor | None:
        """d score / d row under `rule`, rows×C×H×W float32; None if no row has this rank.

        `last` frees the graph as the backward pass goes, which lowers its peak memory: the
        caller takes no other backward pass from this forward pass.
        """
        key = ("input", rule.name, rank)
        if key not in self._cache:
            if rule.needs_every_rectifier and not self.override:
                raise RuntimeError(f"{rule.name} needs a pass with the rectifier override")
            outputs, seeds = seed_gradients(self.selections, rank, self.logits,
                                            self.activations, self._layers)
            grad = None
            if outputs:
                self.switch.rule = rule
                (grad,) = torch.autograd.grad(outputs, self.x, seeds, retain_graph=not last)
                grad = grad.detach().float()
            self._cache[key] = grad
        return self._cache[key]

    def layer_grads(self, layer: str, rank: int
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A recorded layer's output and d score / d output (plain gradient), as float32."""
        key = ("layer", layer, rank)
        if key not in self._cache:
            act = self.activations.get(layer)
            if act is None:
                raise TargetError(f"layer: module {layer!r} did not run in the forward pass")
            outputs, seeds = seed_gradients(self.selections, rank, self.logits,
                                            self.activations, self._layers)
            found = None
            if outputs:
                self.switch.rule = GRADIENT
                (grad,) = torch.autograd.grad(outputs, act, seeds, retain_graph=True,
                                              allow_unused=True)
                if grad is None:
                    raise TargetError(
                        f"layer: the target does not depend on module {layer!r}; choose a "
                        "layer the target is computed from"
                    )
                found = (act.detach().float(), grad.detach().float())
            self._cache[key] = found
        return self._cache[key]

    def attention_means(self) -> list[torch.Tensor]:
        """Each attention block's probabilities averaged over heads: rows×T×T float32."""
        if not self.grad:
            return self.attention
        key = ("attention_means", "", 0)
        if key not in self._cache:
            self._cache[key] = [head_mean(probs) for probs in self.attention]
        return self._cache[key]

    def attention_grads(self, rank: int) -> list[torch.Tensor] | None:
        """d score / d attention probabilities (rows×heads×T×T float32), per block; None if
        no row has this rank. Needs a pass with `grad`; not cached (one method reads them,
        once per rank), so a rank's gradients are freed before the next rank's."""
        outputs, seeds = seed_gradients(self.selections, rank, self.logits, self.activations,
                                        self._layers)
        if not outputs:
            return None
        grads = torch.autograd.grad(outputs, self.attention, seeds, retain_graph=True,
                                    materialize_grads=True)
        return [g.detach().float() for g in grads]

    def applied(self, rule: BackwardRule) -> int:
        """Backward applications of `rule` at rectifiers in this pass's backward passes."""
        return self.switch.applied[rule.name]
