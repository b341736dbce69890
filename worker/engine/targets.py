"""What each map is the gradient of: a class score, or a feature map or neuron of a layer.

`LayerTaps` records named modules' outputs during a forward pass; `seed_gradients` turns the
per-image targets into the gradients fed to the backward passes, one pass per map rank, and
`target_scores` into the scores themselves (for completeness checks and occlusion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shared.errors import TargetError
from shared.spec.layers import ModelLayers
from shared.spec.targets import ClassTarget, LayerTarget, PredictedTarget, Target, TopKTarget
from worker.engine.layouts import Finished, as_nchw

_wanted: ContextVar[dict[str, torch.Tensor | None] | None] = ContextVar("_wanted", default=None)
_order: ContextVar[Callable[[Finished], None] | None] = ContextVar("_order", default=None)


class LayerTaps:
    """Forward hooks installed once on a private model copy, recording only on request.

    The hooks do nothing unless the current call (a context variable, so per thread) asked
    for that layer; installing them up front means no call ever mutates the shared model.
    """

    def __init__(self, model: nn.Module) -> None:
        self.names = [name for name, _ in model.named_modules() if name]
        for name, module in model.named_modules():
            # A copy of another engine's model carries that engine's taps: drop them, or
            # every module would report twice.
            for key in [k for k, hook in module._forward_hooks.items() if isinstance(hook, _Tap)]:
                del module._forward_hooks[key]
            if name:
                module.register_forward_hook(_Tap(name))

    def check(self, names: Sequence[str], field: str = "target.layer") -> None:
        """A TargetError naming `field` if a module name is not in the model."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            hint = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
            raise TargetError(
                f"{field}: no module named {unknown[0]!r} in this model; "
                f"names come from named_modules(), e.g. {hint}"
            )

    @contextmanager
    def capture(self, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor | None]]:
        """Within the block, the outputs of the named modules are recorded in the dict.

        The model goes on with a copy of each recorded output, so a later in-place op
        (ReLU(inplace=True)) changes the copy, never what was recorded: the gradient with
        respect to a recorded tensor is the gradient with respect to the module's output.
        """
        self.check(names)
        recorded: dict[str, torch.Tensor | None] = {name: None for name in names}
        token = _wanted.set(recorded if names else None)
        try:
            yield recorded
        finally:
            _wanted.reset(token)

    @contextmanager
    def order(self, finished: Callable[[Finished], None]) -> Iterator[None]:
        """Within the block, `finished` is called with every module call as it returns."""
        token = _order.set(finished)
        try:
            yield
        finally:
            _order.reset(token)


class _Tap:
    """The forward hook of one module of a `LayerTaps` model, by the module's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        return _record(self.name, module, args, output)


def _record(name: str, module: nn.Module, args: Any, output: Any) -> Any:
    finished = _order.get()
    if finished is not None:
        finished(Finished(name, module, args[0] if args else None, output))
    wanted = _wanted.get()
    if wanted is not None and name in wanted:
        if not isinstance(output, torch.Tensor):
            raise TargetError(f"target.layer: module {name!r} does not output a single tensor")
        wanted[name] = output
        return output.clone()
    return None


@dataclass(frozen=True)
class Selection:
    """One map of one image: a class score, or a layer's channel (or one neuron of it)."""

    class_index: int | None = None
    layer: str | None = None
    channel: int | None = None
    position: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.layer is None:
            return {"class": self.class_index}
        out: dict[str, Any] = {"layer": self.layer, "channel": self.channel}
        if self.position is not None:
            out["position"] = list(self.position)
        return out


def select(targets: Sequence[Target], logits: torch.Tensor) -> list[list[Selection]]:
    """The maps asked of each image, in order, given the forward pass's logits."""
    num_classes = logits.shape[1]
    selections: list[list[Selection]] = []
    for i, target in enumerate(targets):
        if isinstance(target, PredictedTarget):
            selections.append([Selection(int(logits[i].argmax()))])
        elif isinstance(target, ClassTarget):
            if not 0 <= target.index < num_classes:
                raise TargetError(
                    f"target.class: {target.index} is out of range; the model has "
                    f"{num_classes} classes (0..{num_classes - 1})"
                )
            selections.append([Selection(target.index)])
        elif isinstance(target, TopKTarget):
            if target.k < 1:
                raise TargetError(f"target.topk: must be at least 1, got {target.k}")
            k = min(target.k, num_classes)
            top = logits[i].topk(k).indices.tolist()
            selections.append([Selection(int(c)) for c in top])
        elif isinstance(target, LayerTarget):
            selections.append(
                [Selection(layer=target.layer, channel=target.channel, position=target.position)]
            )
        else:
            raise TypeError(f"not a target: {target!r}")
    return selections


def seed_gradients(
    selections: list[list[Selection]],
    rank: int,
    logits: torch.Tensor,
    activations: dict[str, torch.Tensor | None],
    layers: Callable[[], ModelLayers],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs and their seed gradients for the backward pass of map `rank` of every image.

    Each image's seed picks its own selection; images are independent in eval mode, so one
    backward pass yields every image's map at once. A layer's channel and position are
    read in its layout (`layers()`, asked only for a layer target): a channel is one of C,
    a position `(y, x)` on its grid, and a channel's score sums its grid, prefix tokens
    excluded.
    """
    outputs: dict[str, torch.Tensor] = {}
    seeds: dict[str, torch.Tensor] = {}

    def seed_for(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if key not in seeds:
            outputs[key] = tensor
            seeds[key] = torch.zeros_like(tensor)
        return seeds[key]

    for i, per_image in enumerate(selections):
        if rank >= len(per_image):
            continue
        sel = per_image[rank]
        if sel.layer is None:
            seed_for("", logits)[i, sel.class_index] = 1
            continue
        act = activations.get(sel.layer)
        if act is None:
            raise TargetError(f"target.layer: module {sel.layer!r} did not run in the forward pass")
        model_layers = layers()
        layout = model_layers.layout(sel.layer)
        if layout is None:
            raise TargetError(f"target.layer: {model_layers.layout_problem(sel.layer)}")
        if not 0 <= sel.channel < layout.channels:
            raise TargetError(
                f"target.channel: {sel.channel} is out of range; layer {sel.layer!r} has "
                f"{layout.channels} channels"
            )
        index: tuple[Any, ...] = (i, sel.channel)
        if sel.position is not None:
            if len(sel.position) != 2 or any(
                not 0 <= p < s for p, s in zip(sel.position, layout.grid, strict=True)
            ):
                raise TargetError(
                    f"target.position: {list(sel.position)} does not fit layer {sel.layer!r}'s "
                    f"grid {list(layout.grid)}"
                )
            index += sel.position
        as_nchw(layout, seed_for(sel.layer, act))[index] = 1
    return list(outputs.values()), list(seeds.values())


def target_scores(
    selections: list[list[Selection]],
    rank: int,
    logits: torch.Tensor,
    activations: dict[str, torch.Tensor | None],
    layers: Callable[[], ModelLayers],
) -> torch.Tensor:
    """Each row's score for map `rank`: its logit, or its layer channel's (or neuron's) sum.

    The inner product of each output with its seed gradient, so that it is exactly what the
    backward pass of `seed_gradients` differentiates; 0 for rows without a map of this rank.
    """
    outputs, seeds = seed_gradients(selections, rank, logits, activations, layers)
    total = torch.zeros(len(selections), dtype=torch.float32, device=logits.device)
    for output, seed in zip(outputs, seeds, strict=True):
        total = total + (output.detach().float() * seed.float()).flatten(1).sum(1)
    return total
