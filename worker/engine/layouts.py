"""Which tensors of a forward pass are N×C×H×W feature maps: established, never guessed.

A 4-D tensor could be N×C×H×W, channels-last N×H×W×C (Swin, timm's NHWC blocks) or an
attention tensor (batch × heads × tokens × dim); its rank does not tell. `LayoutTrace`
follows one forward pass, torch function by torch function (it is a `TorchFunctionMode`)
and module by module (`finished`, called by a forward hook as each module returns), and
marks a tensor N×C×H×W only when one of these holds:

- it is the model's input;
- a module of a 2-D type returned it (PyTorch's naming: `Conv2d`, `BatchNorm2d`, timm's
  `LayerNorm2d`; also `GroupNorm`), pooling modules excepted (timm pools channels-last
  tensors too);
- a torch function computed it from an N×C×H×W tensor of the same shape without exchanging
  dimensions (element-wise operations, normalizations; permutes, transposes and views that
  exchange strides are not taken for having the same shape);
- it keeps the batch and channels (N, C) or the grid (H, W) of an N×C×H×W tensor it was
  computed from: an argument of the torch function that returned it (element-wise
  operations, concatenation, padding, pooling, a squeeze-and-excitation gate), the tensor a
  module was given, or one of the module's own submodules returned in the same call (a
  stage that turns its tokens back into its downsampling convolution's grid) —
  unless its channel count equals its height or width, where a channels-last tensor of a
  square grid would have the same shape (a permute to N×H×W×C is never taken for the map).

A layout that cannot be established is unknown: no layer of that layout is read as a
feature map. The trace holds tensors weakly; only the module outputs in `calls` stay alive.
`worker.engine.layers` reads the other layouts (channels last, tokens) from the trace; `as_nchw`
is how every reader of a layer sees its output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from shared.spec.layers import NCHW, NHWC, Layout


class Finished(NamedTuple):
    """One module call of a forward pass: its name, the module, its first argument, its output."""

    name: str
    module: nn.Module
    input: Any
    output: Any


def as_nchw(layout: Layout, output: torch.Tensor) -> torch.Tensor:
    """A layer's output as an N×C×H×W view of its grid, prefix tokens dropped: a view, so
    writing into it writes into the output, and gradients flow through it."""
    if layout.kind == NCHW:
        return output
    if layout.kind == NHWC:
        return output.permute(0, 3, 1, 2)
    return output[:, layout.prefix:].unflatten(1, layout.grid).permute(0, 3, 1, 2)


def is_pooling(module: nn.Module) -> bool:
    return "Pool" in type(module).__name__


def _is_2d_type(module: nn.Module) -> bool:
    return isinstance(module, nn.GroupNorm) or any(
        cls.__name__.lower().endswith("2d") for cls in type(module).__mro__)


def _tensors(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]


# Functions that rearrange dimensions: their output inherits a layout only by the rule of
# kept dimensions below, never for having its source's shape.
_REARRANGING = {
    torch.permute, torch.Tensor.permute, torch.transpose, torch.Tensor.transpose,
    torch.swapaxes, torch.Tensor.swapaxes, torch.swapdims, torch.Tensor.swapdims,
    torch.movedim, torch.Tensor.movedim, torch.moveaxis, torch.Tensor.moveaxis, torch.einsum,
    torch.ops.aten.permute.default, torch.ops.aten.transpose.int,
}


def _same_layout(out: torch.Tensor, source: torch.Tensor) -> bool:
    """Whether `out` has the shape of `source` and is not a view of it with its dimensions
    exchanged (a square map with as many channels as rows keeps its shape when permuted)."""
    if out.shape != source.shape:
        return False
    strides, given = out.stride(), source.stride()
    return strides == given or sorted(strides) != sorted(given)


def _keeps(out: torch.Tensor, sources: Iterable[tuple[int, ...]]) -> bool:
    """Whether a 4-D `out` keeps (N, C) or (H, W) of one of the N×C×H×W `sources` shapes."""
    shape = tuple(out.shape)
    if out.dim() != 4 or shape[1] in shape[2:]:
        return False
    return any(source[:2] == shape[:2] or source[2:] == shape[2:] for source in sources)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class LayoutTrace(TorchFunctionMode):
    """Within the block, follows which tensors are N×C×H×W (see the module docstring);
    `calls` lists the module calls `finished` was given, in the order they returned."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self._nchw: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._nchw[x] = True
        self.batch = x.shape[0]
        self.size: tuple[int, int] = (x.shape[-2], x.shape[-1])
        self._below: dict[str, list[tuple[int, ...]]] = {}  # name -> its submodules' maps
        self.calls: list[Finished] = []

    def is_nchw(self, tensor: Any) -> bool:
        return isinstance(tensor, torch.Tensor) and tensor in self._nchw

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sources = [t for t in _tensors((args, kwargs)) if t in self._nchw]
        if sources:
            shapes = [tuple(t.shape) for t in sources]
            same = () if func in _REARRANGING else sources
            for tensor in _tensors(out):
                if any(_same_layout(tensor, t) for t in same) or _keeps(tensor, shapes):
                    self._nchw[tensor] = True
        return out

    def finished(self, call: Finished) -> None:
        """A module returned (called by a forward hook): record it, and its output's layout."""
        self.calls.append(call)
        below = self._below.pop(call.name, [])
        out = call.output
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            return
        if not self.is_nchw(out):
            given = [tuple(call.input.shape)] if self.is_nchw(call.input) else []
            if not ((_is_2d_type(call.module) and not is_pooling(call.module))
                    or _keeps(out, given + below)):
                return
            self._nchw[out] = True
        for ancestor in _ancestors(call.name):
            self._below.setdefault(ancestor, []).append(tuple(out.shape))
