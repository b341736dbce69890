"""The report's pictures: cluster mean maps and suspect overlays with the object outlined."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion

from shared.render import colorize, encode_png, heatmap_png, normalize, reduce_channels
from worker.audit.regions import Region

MEAN_MAP_SCALE = 4  # a 32×32 mean map is drawn 128×128, each cell a 4×4 block
OUTLINE_RGB = (0, 255, 255)


def mean_map_png(mean_map: np.ndarray) -> bytes:
    """A cluster's 32×32 mean map as a heatmap PNG, enlarged without smoothing."""
    block = np.ones((MEAN_MAP_SCALE, MEAN_MAP_SCALE), dtype=np.float32)
    return heatmap_png(np.kron(np.asarray(mean_map, dtype=np.float32), block))


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a region that touch its outside (or the picture's edge)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~binary_erosion(mask, border_value=0)


def suspect_overlay_png(rgb: np.ndarray, values: np.ndarray, region: Region | None,
                        alpha: float = 0.6) -> bytes:
    """The map's relevance over the input picture (uint8 H×W×3), the object outlined in cyan."""
    unit = normalize(reduce_channels(values, "sum_abs"))
    weight = (alpha * unit)[..., None]
    pixels = rgb.astype(np.float32) * (1 - weight) + colorize(unit).astype(np.float32) * weight
    pixels = np.rint(pixels).astype(np.uint8)
    if region is not None and region.mask is not None:
        pixels[outline(region.mask)] = OUTLINE_RGB
    return encode_png(pixels)
