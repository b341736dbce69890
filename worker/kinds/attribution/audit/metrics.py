"""Per-map localisation metrics, computed on the raw float32 map before anything is stored.

Every metric reads the relevance R(x, y) = Σ_c |A_c(x, y)| of a C×H×W map in the model's input
space. A metric that is undefined for a map (no object region, an all-zero map) is None, and
`reasons` says why. Definitions, and the papers they come from, are in docs/audits.md.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt

from worker.kinds.attribution.audit.regions import Region

METRICS: tuple[str, ...] = ("energy_in_box", "pointing_hit", "border_energy", "concentration")
REGION_METRICS: tuple[str, ...] = ("energy_in_box", "pointing_hit")
# Zhang et al. 2016 count a hit within 15 px of the object at a 224 px input.
POINTING_TOLERANCE_PX = 15
REFERENCE_SIDE = 224
BORDER_FRACTION = 0.1
MAX_PEAK_WINDOWS = 256  # more tied maxima than this: one distance transform instead


def relevance(values: np.ndarray) -> np.ndarray:
    """R = Σ_c |A_c| of a C×H×W map: H×W, float64 so that sums over an image stay exact."""
    values = np.asarray(values)
    if values.ndim != 3:
        raise ValueError(f"expected a C×H×W map, got shape {list(values.shape)}")
    return np.abs(values, dtype=np.float64).sum(axis=0)


def pointing_tolerance(side: int) -> float:
    """The pointing game's tolerance in pixels: 15 px at a 224 px input, scaled with the side."""
    return POINTING_TOLERANCE_PX * side / REFERENCE_SIDE


def border_width(side: int) -> int:
    """The width of the outer band: 10 % of the side, rounded, at least one pixel."""
    return max(1, int(round(BORDER_FRACTION * side)))


@functools.lru_cache(maxsize=16)
def border_band(side: int) -> np.ndarray:
    """The side×side pixels within `border_width(side)` of an edge (a read-only bool array)."""
    width = border_width(side)
    index = np.arange(side)
    edge = np.minimum(index, side - 1 - index)
    band = np.minimum(edge[:, None], edge[None, :]) < width
    band.flags.writeable = False
    return band


def gini(values: np.ndarray) -> float:
    """The Gini coefficient of non-negative values, scaled by n/(n-1): 0 uniform, 1 one value.

    Hurley & Rickard 2009: G = Σ_i (2i - n - 1) x_(i) / (n Σ x), with x sorted ascending.
    """
    # Sorted as float32 (the maps' own precision, and twice as fast), summed in float64.
    x = np.sort(np.ravel(values).astype(np.float32)).astype(np.float64)
    n = x.size
    total = x.sum()
    if n < 2 or total <= 0:
        raise ValueError("the Gini coefficient needs at least two values and a positive sum")
    weights = 2 * np.arange(1, n + 1, dtype=np.float64) - n - 1
    # An element-wise sum, not a BLAS dot: BLAS threads would contend with the model's.
    return float((weights * x).sum() / (n * total) * n / (n - 1))


def region_mask(region: Region | np.ndarray | None, side: int) -> tuple[np.ndarray | None, str]:
    """The region's bool side×side mask (or None) and the reason when there is none."""
    if region is None:
        return None, "the item has no box or mask"
    if isinstance(region, Region):
        if region.mask is None:
            return None, region.reason or "the item has no box or mask"
        region = region.mask
    mask = np.asarray(region, dtype=bool)
    if mask.shape != (side, side):
        raise ValueError(f"the region is {list(mask.shape)}; expected the input's {side}×{side}")
    if not mask.any():
        return None, "the region marks no input pixel"
    return mask, ""


def item_metrics(
    values: np.ndarray, region: Region | np.ndarray | None, input_size: int
) -> dict[str, Any]:
    """The four metrics of one C×H×W map, with `reasons` naming why any of them is None.

    `region` is the object's input pixels (bool input_size × input_size, or a `Region` from
    `box_to_input` / `mask_to_input`), or None when the item has no box or mask.
    """
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[1:] != (input_size, input_size):
        raise ValueError(
            f"the map is {list(values.shape)}; expected C×{input_size}×{input_size}"
        )
    mask, no_region = region_mask(region, input_size)
    out: dict[str, Any] = dict.fromkeys(METRICS)
    reasons: dict[str, str] = {}
    r = relevance(values)
    total = float(r.sum())
    if not np.isfinite(total):
        reasons = dict.fromkeys(METRICS, "the map has non-finite values")
    elif total <= 0:
        reasons = dict.fromkeys(METRICS, "the map is zero everywhere")
    else:
        out["border_energy"] = float(r[border_band(input_size)].sum() / total)
        out["concentration"] = gini(r)
        if mask is None:
            reasons = dict.fromkeys(REGION_METRICS, no_region)
        else:
            out["energy_in_box"] = float(r[mask].sum() / total)
            out["pointing_hit"] = pointing_hit(r, mask, pointing_tolerance(input_size))
    if reasons:
        out["reasons"] = reasons
    return out


@functools.lru_cache(maxsize=16)
def _disk(tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """The (dy, dx) offsets within `tolerance` pixels (Euclidean) of a pixel."""
    reach = int(np.floor(tolerance))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    inside = dy**2 + dx**2 <= tolerance**2
    return dy[inside], dx[inside]


def pointing_hit(r: np.ndarray, mask: np.ndarray, tolerance: float) -> bool:
    """Whether a maximum of R lies within `tolerance` pixels (Euclidean) of the region.

    Looks at the disk around each maximum; a map with very many tied maxima (a flat map)
    takes the region's distance transform instead, which gives the same answer.
    """
    peaks = np.argwhere(r == r.max())
    if len(peaks) > MAX_PEAK_WINDOWS:
        return bool(np.any(distance_transform_edt(~mask)[r == r.max()] <= tolerance))
    dy, dx = _disk(tolerance)
    ys = (peaks[:, 0, None] + dy[None]).ravel()
    xs = (peaks[:, 1, None] + dx[None]).ravel()
    inside = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
    return bool(mask[ys[inside], xs[inside]].any())
