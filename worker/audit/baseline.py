"""The centre-Gaussian baseline: the trivial prior that objects sit in the middle of a photo.

A method whose maps do not localise objects better than this map, which never looks at the
image, localises nothing. The report shows its figures beside every method's.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from worker.audit.metrics import item_metrics
from worker.audit.regions import Region

SIGMA_FRACTION = 0.25  # σ = side / 4


@functools.lru_cache(maxsize=16)
def centre_gaussian(side: int) -> np.ndarray:
    """A 1×side×side float32 map exp(-d² / 2σ²), d the distance to the centre, σ = side/4."""
    centre = (side - 1) / 2
    d = np.arange(side, dtype=np.float64) - centre
    sigma = SIGMA_FRACTION * side
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
    g = g[None]
    g.flags.writeable = False
    return g


def baseline_metrics(region: Region | np.ndarray | None, input_size: int) -> dict[str, Any]:
    """The metrics the centre-Gaussian map gets for this item's region (`item_metrics`' shape)."""
    return item_metrics(centre_gaussian(input_size), region, input_size)
