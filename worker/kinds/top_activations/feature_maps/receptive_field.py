"""The theoretical receptive field of a layer's units, from the model's structure.

The receptive field of a unit is the box of input pixels that can influence it through the
network's connections, whatever the weights and the image: for a chain of convolutions
and poolings, the layer arithmetic of kernel sizes, strides, paddings and dilations. Here
that arithmetic is carried out on the network as it runs (`field_tracer`), so that branches
(residual additions, concatenations, squeeze-and-excitation) are followed as they are, not
as a hand-written chain assumes. One forward pass of a blank image gives the fields of
every position of a layer; they are cached per model, layer and input size.

A layer of channels-last or token layout (`shared.spec.layers`) gets the patch window of each
unit instead: the input pixels of its cell of the grid, for a token its patch (the model's
patch size when the grid is its patch grid). After the first attention a token's receptive
field is the whole image, so the window says where the token sits, not all it sees.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from shared.errors import TargetError, UnsupportedModelError
from shared.spec.layers import NCHW, Layout
from worker.engine.core import Engine
from worker.engine.probe import (
    InputSize,
    blank_input,
    grid_size,
    model_layers,
    model_of,
    run_hooked,
)
from worker.engine.tokens import declared_grid, declared_patch, patch_window
from worker.kinds.top_activations.feature_maps.field_tracer import Field, FieldTracer

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ReceptiveFields:
    """The receptive fields of every position of one layer for one input size."""

    layer: str
    input_size: tuple[int, int]
    rows: np.ndarray  # H×2: per grid row, the input rows [y0, y1)
    cols: np.ndarray  # W×2: per grid column, the input columns [x0, x1)

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def box(self, position: Sequence[int]) -> Box:
        """`(x0, y0, x1, y1)` in input pixels, end exclusive, of the unit at `(y, x)`."""
        if len(position) != 2 or not all(0 <= p < n for p, n in zip(position, self.grid,
                                                                     strict=True)):
            raise TargetError(
                f"position: {list(position)} does not fit layer {self.layer!r}'s grid "
                f"{list(self.grid)}"
            )
        y, x = position
        (y0, y1), (x0, x1) = self.rows[y], self.cols[x]
        height, width = self.input_size
        y0, y1 = max(int(y0), 0), min(int(y1), height)
        x0, x1 = max(int(x0), 0), min(int(x1), width)
        if y0 >= y1 or x0 >= x1:  # a unit that sees only padding
            return (0, 0, 0, 0)
        return (x0, y0, x1, y1)


def trace_receptive_fields(
    engine_or_model: Engine | nn.Module, layer: str, input_size: InputSize, in_channels: int = 3
) -> ReceptiveFields:
    """Trace one forward pass of a blank image and read `layer`'s receptive fields."""
    model = model_of(engine_or_model)
    x = blank_input(model, input_size, in_channels)
    tracer = FieldTracer(x)
    found: list[Field | None] = []
    run_hooked(model, x, {
        layer: lambda call: found.append(
            tracer.field(call.output) if isinstance(call.output, torch.Tensor)
            and call.output.dim() == 4 else None)
    }, tracer)
    if len(found) != 1 or found[0] is None:
        problem = ("does not run" if not found else f"runs {len(found)} times" if
                   len(found) > 1 else "does not output one N×C×H×W tensor")
        raise TargetError(f"layer: module {layer!r} {problem} in a forward pass; it has no "
                          "single feature map")
    field = found[0]
    if field.problem:
        raise UnsupportedModelError(
            f"the receptive field of layer {layer!r} cannot be traced: {field.problem}"
        )
    return ReceptiveFields(layer, grid_size(input_size), field.rows.copy(), field.cols.copy())


def patch_windows(model: nn.Module, layer: str, layout: Layout, input_size: InputSize
                  ) -> ReceptiveFields:
    """The patch window of every unit of a channels-last or token layer (module docstring)."""
    size = grid_size(input_size)
    stride = declared_patch(model) if declared_grid(model, size) == layout.grid else None
    height, width = layout.grid
    rows = np.array([patch_window(layout.grid, size, (y, 0), stride)[1::2]  # (y0, y1)
                     for y in range(height)])
    cols = np.array([patch_window(layout.grid, size, (0, x), stride)[0::2]  # (x0, x1)
                     for x in range(width)])
    return ReceptiveFields(layer, size, rows, cols)


_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple, ReceptiveFields]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()


def layer_receptive_fields(
    engine_or_model: Engine | nn.Module, layer: str, input_size: InputSize, in_channels: int = 3
) -> ReceptiveFields:
    """`layer`'s receptive fields, traced once per model, layer and input size."""
    model = model_of(engine_or_model)
    key = (layer, grid_size(input_size), in_channels)
    with _cache_lock:
        cached = _cache.get(model, {}).get(key)
    if cached is not None:
        return cached
    layout = model_layers(engine_or_model, input_size, in_channels).layout(layer)
    if layout is not None and layout.kind != NCHW:
        fields = patch_windows(model, layer, layout, input_size)
    else:
        fields = trace_receptive_fields(model, layer, input_size, in_channels)
    with _cache_lock:
        _cache.setdefault(model, {})[key] = fields
    return fields


def receptive_field(
    engine_or_model: Engine | nn.Module, layer: str, position: Sequence[int],
    input_size: InputSize,
) -> Box:
    """`(x0, y0, x1, y1)`: the input pixels (preprocessed, end exclusive, clipped to the
    image) that can influence `layer`'s unit at `position` `(y, x)`."""
    return layer_receptive_fields(engine_or_model, layer, input_size).box(position)
