"""The report's pictures: cluster mean maps, and suspects drawn as their outputs are, with the
object outlined."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion

from shared.media.render import encode_png, heatmap_png
from shared.media.renderings import Rendering
from shared.spec.methods import HEATMAP
from worker.kinds.attribution.audit.regions import Region

MEAN_MAP_SCALE = 4  # a 32×32 mean map is drawn 128×128, each cell a 4×4 block
OUTLINE_RGB = (0, 255, 255)


def mean_map_png(mean_map: np.ndarray) -> bytes:
    """A cluster's 32×32 mean map as a heatmap PNG, enlarged without smoothing.

    The mean is of the relevance thumbnails the clustering compared (R = Σ_c |A_c| averaged
    down to 32×32), of different images: a heatmap is its one meaningful picture,
    whatever the method's `render`, and its blocks show the resolution that was compared.
    """
    block = np.ones((MEAN_MAP_SCALE, MEAN_MAP_SCALE), dtype=np.float32)
    return heatmap_png(np.kron(np.asarray(mean_map, dtype=np.float32), block))


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a region that touch its outside (or the picture's edge)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~binary_erosion(mask, border_value=0)


def suspect_overlay_png(rgb: np.ndarray, values: np.ndarray, region: Region | None,
                        drawing: Rendering) -> bytes:
    """A suspect's map as its output draws it, the object outlined in cyan: a heatmap as its
    overlay on the input picture (uint8 H×W×3), a `cam` or `signed` map as its png."""
    kind = "overlay" if drawing.render == HEATMAP else "png"
    pixels, _ = drawing.pixels(kind, values, rgb)
    if region is not None and region.mask is not None:
        pixels[outline(region.mask)] = OUTLINE_RGB
    return encode_png(pixels)
