"""Relevance thumbnails: the map's R = Σ_c |A_c| averaged down to 32×32.

The worker stores one per item and output, so that strategy clustering (`worker.audit.spray`)
reads 4 KB per map instead of the full map.
"""

from __future__ import annotations

import functools

import numpy as np

from worker.audit.metrics import relevance

THUMBNAIL_SIDE = 32


@functools.lru_cache(maxsize=32)
def area_weights(source: int, target: int) -> np.ndarray:
    """target×source weights averaging the source pixels that each target cell covers.

    Cell i spans [i·s/t, (i+1)·s/t) of the source; each source pixel weighs the length of its
    overlap with the cell, divided by the cell's length (so every row sums to one).
    """
    edges = np.arange(target + 1, dtype=np.float64) * source / target
    start, end = edges[:-1, None], edges[1:, None]
    pixel = np.arange(source, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(end, pixel + 1) - np.maximum(start, pixel), 0.0, None)
    weights = overlap / (end - start)
    weights.flags.writeable = False
    return weights


def area_resize(map2d: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """An H×W map averaged over areas into side×side (float32); exact for any H and W."""
    map2d = np.asarray(map2d, dtype=np.float64)
    rows = area_weights(map2d.shape[0], side)
    cols = area_weights(map2d.shape[1], side)
    return (rows @ map2d @ cols.T).astype(np.float32)


def thumbnail(values: np.ndarray) -> np.ndarray:
    """The 32×32 float32 thumbnail of a C×H×W map: its relevance R, area-averaged."""
    return area_resize(relevance(values))
