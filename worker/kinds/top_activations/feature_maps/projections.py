"""Phase 2 of the top-k figure: each top activation projected to the input, and its patch.

The projection of one activation is the map of that single unit, every other activation of
the layer zero: the engine's layer target with a `position`, whose backward pass starts
from a gradient of 1 at the unit (the engine's convention; DeconvNet is positively
homogeneous, so the paper's seed, a positive activation itself, only rescales it). The patch is
the unit's receptive field cut from the preprocessed input, un-normalized for display (for a
channels-last or token layer, its patch window: `receptive_field`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from shared.errors import InputError
from shared.spec.model import Preprocessing
from shared.spec.targets import LayerTarget
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps.receptive_field import Box, layer_receptive_fields
from worker.kinds.top_activations.feature_maps.topk import TopActivation
from worker.models.build import display_image


@dataclass(frozen=True)
class Projection:
    """One top activation of a channel: its maps by method and the patch its unit sees."""

    channel: int
    top: TopActivation
    maps: dict[str, np.ndarray]  # method name: the raw float32 C×H×W map, unscaled
    patch_box: Box  # (x0, y0, x1, y1) in preprocessed input pixels, end exclusive
    patch: np.ndarray  # uint8 h×w×3: the display image inside `patch_box`


def project(
    engine: Engine,
    layer: str,
    units: Sequence[tuple[int, TopActivation]],
    images: Mapping[int, torch.Tensor],
    methods: Sequence[str],
    preprocessing: Preprocessing,
    batch_size: int = 16,
) -> list[Projection]:
    """The projections and patches of `units` (channel, top activation), in order.

    `images` maps each item index to its preprocessed C×H×W input; an item that excites
    several channels is loaded once and projected once per channel. Units are batched
    `batch_size` at a time: one forward and one backward per method per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    missing = sorted({top.index for _, top in units} - set(images))
    if missing:
        raise InputError(f"no input given for items {missing[:10]}")
    projections: list[Projection] = []
    for start in range(0, len(units), batch_size):
        batch = units[start:start + batch_size]
        x = torch.stack([images[top.index] for _, top in batch])
        fields = layer_receptive_fields(engine, layer, tuple(x.shape[-2:]), x.shape[1])
        targets = [LayerTarget(layer, channel, top.position) for channel, top in batch]
        result = engine.attribute(x, methods, targets)
        for (channel, top), image, inputs in zip(batch, result.images, x, strict=True):
            box = fields.box(top.position)
            x0, y0, x1, y1 = box
            patch = display_image(inputs[:, y0:y1, x0:x1].detach().cpu(), preprocessing)
            projections.append(Projection(
                channel, top, {m.method: m.values for m in image.maps}, box, patch
            ))
    return projections
