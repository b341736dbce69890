"""Phase 1 of the top-k figure: forward passes only, each image's maximum per channel.

For every channel c and image i, a(i, c) is the maximum of the layer's output over its
positions, and the position is the first maximum in row-major order. The output is read in
its layout (`worker.engine.layouts.as_nchw`): a channels-last map or the patch tokens of a
transformer layer (prefix tokens excluded) as an h×w grid, so a position is a token's
`(y, x)`. Each batch folds into
a running `TopK`, so a chunk of any length needs O(channels × k) memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext

import numpy as np
import torch

from shared.errors import TargetError
from shared.spec.top_activations import ALL_CHANNELS, nearest_hint
from worker.engine.core import PRECISIONS, Engine
from worker.engine.layouts import as_nchw
from worker.kinds.top_activations.feature_maps.topk import TopK


def _autocast(engine: Engine):
    dtype = PRECISIONS[engine.precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=engine.device.type, dtype=dtype)


def _channel_list(layer: str, channels: Sequence[int] | str, num_channels: int
                  ) -> tuple[int, ...]:
    if channels == ALL_CHANNELS:
        return tuple(range(num_channels))
    if isinstance(channels, str):
        raise ValueError(f'channels must be a list of indices or "all", got {channels!r}')
    for channel in channels:
        if not 0 <= channel < num_channels:
            raise TargetError(
                f"channels: {channel} is out of range; layer {layer!r} has {num_channels} "
                f"channels (0..{num_channels - 1})"
            )
    return tuple(int(c) for c in channels)


def layer_maxima(engine: Engine, x: torch.Tensor, layer: str
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The forward pass: per image and channel the maximum over positions (N×C float32),
    its flat row-major position (N×C), and the layer's width."""
    if layer not in engine.taps.names:
        raise TargetError(
            f"layer: no module named {layer!r} in this model; "
            f"{nearest_hint(layer, engine.taps.names)}"
        )
    memory_format = torch.channels_last if engine.channels_last else torch.preserve_format
    x = x.detach().to(engine.device, torch.float32, memory_format=memory_format)
    layers = engine.layers(x[:1])
    layout = layers.layout(layer)
    if layout is None:
        raise TargetError(f"layer: {layers.layout_problem(layer)}")
    with torch.inference_mode(), engine.taps.capture([layer]) as captured, _autocast(engine):
        engine.model(x)
        output = captured[layer]
        if output is None:
            raise TargetError(f"layer: module {layer!r} did not run in the forward pass")
        # torch.max returns the first maximal index: the first position in row-major order.
        maxima, where = as_nchw(layout, output).flatten(2).max(dim=2)
    return maxima.float(), where, layout.grid[1]


def scan_batch(
    engine: Engine,
    x: torch.Tensor,
    indices: Sequence[int],
    layer: str,
    channels: Sequence[int] | str,
    k: int,
    partial: TopK | None = None,
) -> TopK:
    """The running top-k of `layer`'s `channels` (indices or `"all"`) after images `x`
    (N×C×H×W, preprocessed), whose item indices are `indices`, are folded into `partial`."""
    if len(indices) != len(x):
        raise ValueError(f"{len(indices)} indices for {len(x)} images")
    if len(set(indices)) != len(indices):
        raise ValueError("item indices within a batch must be distinct")
    maxima, where, width = layer_maxima(engine, x, layer)
    chosen = _channel_list(layer, channels, maxima.shape[1])
    if partial is None:
        partial = TopK.empty(layer, k, chosen)
    elif (partial.layer, partial.k, partial.channels) != (layer, k, chosen):
        raise ValueError(
            f"the partial result is the top-{partial.k} of {partial.layer!r}, not the "
            f"top-{k} of {layer!r} for these channels"
        )
    if channels != ALL_CHANNELS:
        picked = torch.as_tensor(chosen, device=maxima.device)
        maxima, where = maxima[:, picked], where[:, picked]
    where = where.cpu().numpy()
    positions = np.stack([where // width, where % width], axis=-1)
    return partial.update(maxima.cpu().numpy(), positions, indices)


def scan(
    engine: Engine,
    batches: Iterable[tuple[torch.Tensor, Sequence[int]]],
    layer: str,
    channels: Sequence[int] | str,
    k: int,
    partial: TopK | None = None,
) -> TopK:
    """`scan_batch` folded over `(images, indices)` batches: the top-k of a chunk."""
    result = partial
    for x, indices in batches:
        result = scan_batch(engine, x, indices, layer, channels, k, result)
    if result is None:
        raise ValueError("no batch to scan")
    return result
