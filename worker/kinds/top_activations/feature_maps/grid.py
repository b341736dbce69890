"""The picture of one channel in the paper's layout: its projections beside their patches.

Zeiler & Fergus (2014, Fig. 2) show, for each feature map, a 3×3 block of the top
activations' projections next to a 3×3 block of the image patches they come from. Here
there is one block per method, then the block of patches, each block filled row by row,
best activation first. A projection is shown cropped to its patch, zero as grey, scaled on
its own (a percentile of its absolute values). Patches clipped by the image border are
smaller than the rest and are centred in their cells; tiny cells are enlarged by whole
pixels, so that the picture of an early layer is not a few dots. The file a job stores
(`grid_png`) is labelled as the job's page labels it: each block titled with its method (or
"patches"), the layer and the channel, each cell captioned with its rank and activation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared.media.render import encode_png, signed_rgb
from worker.kinds.top_activations.feature_maps.projections import Projection

BACKGROUND = 255  # white: distinct from the grey of a zero projection
CELL_GAP = 2
BLOCK_GAP = 8
MIN_CELL = 48
TEXT = (0, 0, 0)
LINE = 12  # px a line of Pillow's default font (10 px) takes


def projection_crop(projection: Projection, method: str) -> np.ndarray:
    """The method's projection inside the patch box, as a display picture of its own."""
    x0, y0, x1, y1 = projection.patch_box
    return signed_rgb(projection.maps[method][:, y0:y1, x0:x1])


def _write(picture: np.ndarray, texts: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """The picture with each text drawn at its (x, y), top left."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    for x, y, text in texts:
        draw.text((x, y), text, fill=TEXT, font=ImageFont.load_default())
    return np.asarray(image)


def _block(pictures: list[np.ndarray], cell: tuple[int, int], scale: int, columns: int,
           captions: Sequence[str] = ()) -> np.ndarray:
    """The pictures in rows of `columns` cells, each `captions[i]` (if any) under its cell."""
    rows = math.ceil(len(pictures) / columns)
    height, width = cell[0] * scale, cell[1] * scale
    row_height = height + (LINE if captions else 0)
    block = np.full((rows * row_height + (rows - 1) * CELL_GAP,
                     columns * width + (columns - 1) * CELL_GAP, 3), BACKGROUND, np.uint8)
    for i, picture in enumerate(pictures):
        big = picture.repeat(scale, axis=0).repeat(scale, axis=1)
        top = (i // columns) * (row_height + CELL_GAP) + (height - big.shape[0]) // 2
        left = (i % columns) * (width + CELL_GAP) + (width - big.shape[1]) // 2
        block[top:top + big.shape[0], left:left + big.shape[1]] = big
    return _write(block, [((i % columns) * (width + CELL_GAP),
                           (i // columns) * (row_height + CELL_GAP) + height, caption)
                          for i, caption in enumerate(captions)])


def _titled(block: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The block under its title lines, widened to the widest line."""
    font = ImageFont.load_default()
    width = max(block.shape[1], *(math.ceil(font.getlength(line)) for line in lines))
    top = len(lines) * LINE + CELL_GAP
    out = np.full((top + block.shape[0], width, 3), BACKGROUND, np.uint8)
    out[top:, :block.shape[1]] = block
    return _write(out, [(0, i * LINE, line) for i, line in enumerate(lines)])


def channel_grid(
    projections: Sequence[Projection],
    methods: Sequence[str],
    columns: int = 3,
    min_cell: int = MIN_CELL,
    *,
    labelled: bool = False,
    layer: str | None = None,
) -> np.ndarray:
    """The H×W×3 uint8 picture of one channel's top activations (best first); `labelled`,
    with each block's title (its method or "patches", `layer` if given, the channel) and
    each cell's rank and activation."""
    if not projections:
        return np.full((min_cell, min_cell, 3), BACKGROUND, np.uint8)
    channels = {p.channel for p in projections}
    if len(channels) != 1:
        raise ValueError(f"one channel per picture; got channels {sorted(channels)}")
    columns = max(1, min(columns, len(projections)))
    cell = (max(p.patch.shape[0] for p in projections),
            max(p.patch.shape[1] for p in projections))
    scale = max(1, math.ceil(min_cell / max(max(cell), 1)))
    captions = [f"#{rank + 1} {p.top.activation:.4g}" for rank, p in enumerate(projections)
                ] if labelled else []
    named = [(m, [projection_crop(p, m) for p in projections]) for m in methods]
    named.append(("patches", [p.patch for p in projections]))
    blocks = [_block(pictures, cell, scale, columns, captions) for _, pictures in named]
    if labelled:
        about = [*([] if layer is None else [layer]), f"channel {projections[0].channel}"]
        blocks = [_titled(block, [name, *about]) for block, (name, _) in zip(
            blocks, named, strict=True)]
    gap = np.full((blocks[0].shape[0], BLOCK_GAP, 3), BACKGROUND, np.uint8)
    parts = [part for block in blocks for part in (block, gap)][:-1]
    return np.concatenate(parts, axis=1)


def grid_png(projections: Sequence[Projection], methods: Sequence[str], columns: int = 3,
             layer: str | None = None) -> bytes:
    """`channel_grid`, labelled, as PNG bytes: the channel's figure as a job stores it."""
    return encode_png(channel_grid(projections, methods, columns, labelled=True, layer=layer))
