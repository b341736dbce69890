"""The picture of one channel in the paper's layout: its projections beside their patches.

Zeiler & Fergus (2014, Fig. 2) show, for each feature map, a 3×3 block of the top
activations' projections next to a 3×3 block of the image patches they come from. Here
there is one block per method, then the block of patches, each block filled row by row,
best activation first. A projection is shown cropped to its patch, zero as grey, scaled on
its own (a percentile of its absolute values). Patches clipped by the image border are
smaller than the rest and are centred in their cells; tiny cells are enlarged by whole
pixels, so that the picture of an early layer is not a few dots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from shared.render import encode_png, signed_rgb
from worker.feature_maps.projections import Projection

BACKGROUND = 255  # white: distinct from the grey of a zero projection
CELL_GAP = 2
BLOCK_GAP = 8
MIN_CELL = 48


def projection_crop(projection: Projection, method: str) -> np.ndarray:
    """The method's projection inside the patch box, as a display picture of its own."""
    x0, y0, x1, y1 = projection.patch_box
    return signed_rgb(projection.maps[method][:, y0:y1, x0:x1])


def _block(pictures: list[np.ndarray], cell: tuple[int, int], scale: int, columns: int
           ) -> np.ndarray:
    rows = math.ceil(len(pictures) / columns)
    height, width = cell[0] * scale, cell[1] * scale
    block = np.full((rows * height + (rows - 1) * CELL_GAP,
                     columns * width + (columns - 1) * CELL_GAP, 3), BACKGROUND, np.uint8)
    for i, picture in enumerate(pictures):
        big = picture.repeat(scale, axis=0).repeat(scale, axis=1)
        top = (i // columns) * (height + CELL_GAP) + (height - big.shape[0]) // 2
        left = (i % columns) * (width + CELL_GAP) + (width - big.shape[1]) // 2
        block[top:top + big.shape[0], left:left + big.shape[1]] = big
    return block


def channel_grid(
    projections: Sequence[Projection],
    methods: Sequence[str],
    columns: int = 3,
    min_cell: int = MIN_CELL,
) -> np.ndarray:
    """The H×W×3 uint8 picture of one channel's top activations (best first)."""
    if not projections:
        return np.full((min_cell, min_cell, 3), BACKGROUND, np.uint8)
    channels = {p.channel for p in projections}
    if len(channels) != 1:
        raise ValueError(f"one channel per picture; got channels {sorted(channels)}")
    columns = max(1, min(columns, len(projections)))
    cell = (max(p.patch.shape[0] for p in projections),
            max(p.patch.shape[1] for p in projections))
    scale = max(1, math.ceil(min_cell / max(max(cell), 1)))
    blocks = [_block([projection_crop(p, m) for p in projections], cell, scale, columns)
              for m in methods]
    blocks.append(_block([p.patch for p in projections], cell, scale, columns))
    gap = np.full((blocks[0].shape[0], BLOCK_GAP, 3), BACKGROUND, np.uint8)
    parts = [part for block in blocks for part in (block, gap)][:-1]
    return np.concatenate(parts, axis=1)


def grid_png(projections: Sequence[Projection], methods: Sequence[str], columns: int = 3
             ) -> bytes:
    """`channel_grid` as PNG bytes."""
    return encode_png(channel_grid(projections, methods, columns))
