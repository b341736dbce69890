"""The centre-Gaussian baseline: the trivial prior that objects sit in the middle of a photo.

A method whose maps do not localise objects better than this map, which never looks at the
image, localises nothing. The report shows its figures beside every method's.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from worker.kinds.attribution.audit.metrics import (
    REGION_METRICS,
    item_metrics,
    pointing_hit,
    pointing_tolerance,
    region_mask,
)
from worker.kinds.attribution.audit.regions import Region

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


@functools.lru_cache(maxsize=16)
def _without_region(side: int) -> dict[str, Any]:
    """The baseline's metrics that do not depend on the item: its border share and Gini."""
    return item_metrics(centre_gaussian(side), None, side)


def baseline_metrics(region: Region | np.ndarray | None, input_size: int) -> dict[str, Any]:
    """The metrics the centre-Gaussian map gets for this item's region (`item_metrics`' shape).

    Equal to `item_metrics(centre_gaussian(input_size), region, input_size)`; only the two
    region metrics are computed per item.
    """
    constant = _without_region(input_size)
    mask, reason = region_mask(region, input_size)
    if mask is None:
        return {**constant, "reasons": dict.fromkeys(REGION_METRICS, reason)}
    g = centre_gaussian(input_size)[0]
    out = {key: value for key, value in constant.items() if key != "reasons"}
    out["energy_in_box"] = float(g[mask].sum(dtype=np.float64) / _total(input_size))
    out["pointing_hit"] = pointing_hit(g, mask, pointing_tolerance(input_size))
    return out


@functools.lru_cache(maxsize=16)
def _total(side: int) -> float:
    return float(centre_gaussian(side).sum(dtype=np.float64))
