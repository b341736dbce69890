"""Relevance thumbnails: the map's R = Σ_c |A_c| averaged down to 32×32.

The worker stores one per item and output, so that strategy clustering
(`worker.kinds.attribution.audit.spray`) reads 4 KB per map instead of the full map. Averages come
from running sums (no matrix products: BLAS threads would contend with the model's own on a busy
worker).
"""

from __future__ import annotations

import numpy as np

from worker.kinds.attribution.audit.metrics import relevance

THUMBNAIL_SIDE = 32


def _average_rows(values: np.ndarray, target: int) -> np.ndarray:
    """Rows averaged into `target` cells; cell i spans [i·s/t, (i+1)·s/t) of the s rows.

    The integral of the rows (a step function) at each cell edge, by linear interpolation of
    their running sum; a cell's average is the difference of its edges' integrals over its
    length. Exact for any s and t, fractional pixels included.
    """
    source = values.shape[0]
    running = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    edges = np.arange(target + 1, dtype=np.float64) * source / target
    row = np.minimum(np.floor(edges).astype(np.int64), source - 1)
    integral = running[row] + (edges - row)[:, None] * values[row]
    return (integral[1:] - integral[:-1]) * (target / source)


def area_resize(map2d: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """An H×W map averaged over areas into side×side (float32); exact for any H and W."""
    map2d = np.asarray(map2d, dtype=np.float64)
    return _average_rows(_average_rows(map2d, side).T, side).T.astype(np.float32)


def thumbnail(values: np.ndarray) -> np.ndarray:
    """The 32×32 float32 thumbnail of a C×H×W map: its relevance R, area-averaged."""
    return area_resize(relevance(values))
