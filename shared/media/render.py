"""Pure rendering: attribution arrays in, 2-D maps and PNG bytes out.

numpy only (no torch, no Pillow): the worker renders in a thread pool beside the model, and
the API renders maps cut from shards on demand. Rendering can cost more than attribution, so
PNGs are written directly: no row filter (Pillow tries all five on every row of an RGB image)
and zlib level 1, which releases the GIL. Heatmaps are palette PNGs, one byte a pixel.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from shared.media.colormap import INFERNO

PNG_COMPRESS_LEVEL = 1
DEFAULT_CLIP_PERCENTILE = 99.5


def reduce_channels(values: np.ndarray, how: str = "max_abs") -> np.ndarray:
    """A C×H×W attribution reduced over channels to H×W (float32, non-negative)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"expected a C×H×W array, got shape {values.shape}")
    if how == "max_abs":
        return np.abs(values).max(axis=0)
    if how == "sum_abs":
        return np.abs(values).sum(axis=0)
    if how == "l2":
        return np.sqrt(np.square(values).sum(axis=0))
    if how == "positive":
        return np.clip(values, 0, None).sum(axis=0)
    raise ValueError(f"unknown reduction {how!r}; use max_abs, sum_abs, l2 or positive")


def clip_bound(map2d: np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE) -> float:
    """The value where a non-negative map's colours saturate: its percentile, or its maximum
    when the percentile is 0 (a map of a few hot pixels); 0 for an all-zero map."""
    map2d = np.asarray(map2d, dtype=np.float32)
    top = float(np.percentile(map2d, clip_percentile)) if map2d.size else 0.0
    if not np.isfinite(top) or top <= 0:
        top = float(map2d.max()) if map2d.size else 0.0
    return top


def scaled(map2d: np.ndarray, top: float) -> np.ndarray:
    """A non-negative map divided by `top` and clipped to [0, 1]; all zero when `top` is not
    positive, rather than dividing by zero."""
    map2d = np.asarray(map2d, dtype=np.float32)
    if top <= 0:
        return np.zeros_like(map2d)
    return np.clip(map2d / top, 0.0, 1.0)


def normalize(map2d: np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE) -> np.ndarray:
    """Scale a non-negative map to [0, 1], saturating above the given percentile.

    An all-zero map stays all zero rather than dividing by zero.
    """
    return scaled(map2d, clip_bound(map2d, clip_percentile))


def color_indices(unit: np.ndarray) -> np.ndarray:
    """H×W values in [0, 1] to uint8 indices into the colour map."""
    return np.rint(unit * 255).astype(np.uint8)


def colorize(unit: np.ndarray) -> np.ndarray:
    """H×W values in [0, 1] to an H×W×3 uint8 picture in the inferno colour map."""
    return INFERNO[color_indices(unit)]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(pixels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """uint8 pixels as PNG bytes: H×W×3 RGB, H×W grey, or H×W indices into a 256×3 palette;
    uint16 H×W grey as a 16-bit PNG."""
    deep = np.asarray(pixels).dtype == np.uint16 and palette is None
    pixels = np.ascontiguousarray(pixels, dtype=">u2" if deep else np.uint8)
    height, width = pixels.shape[:2]
    if palette is not None:
        color_type = 3
    elif pixels.ndim == 3 and pixels.shape[2] == 3 and not deep:
        color_type = 2
    elif pixels.ndim == 2:
        color_type = 0
    else:
        raise ValueError(f"expected H×W×3 or H×W pixels, got shape {pixels.shape}")
    rows = np.empty((height, 1 + pixels[0].nbytes), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "none" on every row
    rows[:, 1:] = pixels.view(np.uint8).reshape(height, -1)  # 16-bit samples big-endian
    header = struct.pack(">IIBBBBB", width, height, 16 if deep else 8, color_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    if palette is not None:
        png += _chunk(b"PLTE", np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    png += _chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL))
    return png + _chunk(b"IEND", b"")


def heatmap_png(map2d: np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE) -> bytes:
    """A reduced map as a colour heatmap (a palette PNG in the inferno colour map)."""
    return encode_png(color_indices(normalize(map2d, clip_percentile)), palette=INFERNO)


def blend(rgb: np.ndarray, unit: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """The colours of `unit` (H×W in [0, 1], inferno) over a uint8 H×W×3 picture: weight 0
    keeps the picture, 1 shows the colour; `weight` is one number or one per pixel."""
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float32), unit.shape)[..., None]
    blended = rgb.astype(np.float32) * (1 - weight) + colorize(unit).astype(np.float32) * weight
    return np.rint(blended).astype(np.uint8)


def overlay_png(
    rgb: np.ndarray,
    map2d: np.ndarray,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
    opacity: float = 1.0,
) -> bytes:
    """The heatmap over the input picture, each pixel's colour weighted by its value: the
    weight is `opacity` times the normalized attribution, so zero shows the picture and the
    clip value and above show the colour at `opacity` (1: a lone hot pixel at full colour)."""
    unit = normalize(map2d, clip_percentile)
    return encode_png(blend(rgb, unit, opacity * unit))


def smooth_cam(map2d: np.ndarray, grid: tuple[int, int] | None) -> np.ndarray:
    """A map upsampled bilinearly from a layer's `grid` (h, w), its creases smoothed away.

    Bilinear interpolation is continuous but its slope jumps at every cell centre, which a
    colour map draws as straight creases. Three passes of a moving average one cell wide
    along each axis (the map mirrored at its borders) round them off: close to a Gaussian
    of σ = half a cell, in running sums rather than matrix products, which would contend for
    threads with the model's on a busy worker. No grid, or one as fine as the map, leaves
    the map as it is.
    """
    map2d = np.asarray(map2d, dtype=np.float32)
    if grid is None:
        return map2d
    out = map2d.astype(np.float64)
    for axis, cells in enumerate(grid):
        width = int(round(map2d.shape[axis] / cells)) | 1  # odd, to stay centred
        for _ in range(3 if width > 1 else 0):
            out = _moving_average(out, width, axis)
    return out.astype(np.float32)


def _moving_average(values: np.ndarray, width: int, axis: int) -> np.ndarray:
    """The mean over `width` (odd) pixels centred on each pixel along `axis`, the map
    mirrored at its borders (a window cut at a border would put a kink where it starts)."""
    pad = [(0, 0)] * values.ndim
    pad[axis] = (width // 2, width // 2)
    padded = np.pad(values, pad, mode="symmetric")
    running = np.concatenate([np.zeros_like(np.take(padded, [0], axis)),
                              np.cumsum(padded, axis=axis)], axis=axis)
    start = np.arange(values.shape[axis])
    return (np.take(running, start + width, axis) - np.take(running, start, axis)) / width


def signed_bound(values: np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE
                 ) -> float:
    """The scale of the signed picture: the percentile of |values| (their maximum when that is
    0); 0 for an all-zero map."""
    values = np.asarray(values, dtype=np.float32)
    scale = float(np.percentile(np.abs(values), clip_percentile)) if values.size else 0.0
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.abs(values).max()) if values.size else 0.0
    return scale


def signed_rgb(values: np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE
               ) -> np.ndarray:
    """The guided backprop / DeconvNet pictures of the papers: a signed C×H×W map around grey,
    as uint8 H×W×3.

    Zero is mid-grey; each value is scaled by the percentile of absolute values so that
    both signs share one scale (`signed_bound`): -bound is black, +bound white, per channel.
    """
    values = np.asarray(values, dtype=np.float32)
    scale = signed_bound(values, clip_percentile)
    unit = np.full_like(values, 0.5) if scale <= 0 else np.clip(0.5 + values / (2 * scale), 0, 1)
    if unit.shape[0] == 1:
        unit = np.repeat(unit, 3, axis=0)
    return np.rint(unit[:3].transpose(1, 2, 0) * 255).astype(np.uint8)


def signed_rgb_png(values: np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE) -> bytes:
    """`signed_rgb` as PNG bytes."""
    return encode_png(signed_rgb(values, clip_percentile))


COLORMAPS: dict[str, np.ndarray] = {
    "inferno": INFERNO,
    # The signed pictures: each channel from black (-bound) through grey (0) to white (+bound).
    "signed": np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),
}


def colorbar_png(width: int = 256, height: int = 12, colormap: str = "inferno") -> bytes:
    """A horizontal colour bar, low (left) to high (right), for pages that show the maps: the
    inferno of heatmaps, or the grey ramp of signed pictures."""
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)
    return encode_png(np.repeat(color_indices(ramp)[None, :], height, axis=0),
                      palette=COLORMAPS[colormap])
