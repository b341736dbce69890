"""Rendering is pure: numpy in, PNG bytes out; checked against numpy written by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.media.colormap import INFERNO
from shared.media.render import (
    colorbar_png,
    encode_png,
    heatmap_png,
    normalize,
    overlay_png,
    reduce_channels,
    signed_rgb_png,
)

VALUES = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)


def _decode(png: bytes) -> np.ndarray:
    """RGB pixels of a PNG, whatever its mode (heatmaps are palette PNGs)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize(
    ("how", "by_hand"),
    [
        ("max_abs", lambda v: np.max(np.abs(v), axis=0)),
        ("sum_abs", lambda v: np.sum(np.abs(v), axis=0)),
        ("l2", lambda v: np.sqrt(np.sum(v * v, axis=0))),
        ("positive", lambda v: np.sum(np.where(v > 0, v, 0), axis=0)),
    ],
)
def test_reduce_channels(how, by_hand):
    got = reduce_channels(VALUES, how)
    assert got.shape == (5, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, by_hand(VALUES), rtol=1e-6)


def test_reduce_channels_is_max_abs_by_default_and_rejects_the_unknown():
    np.testing.assert_array_equal(reduce_channels(VALUES), reduce_channels(VALUES, "max_abs"))
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_channels(VALUES, "mean")
    with pytest.raises(ValueError, match="C×H×W"):
        reduce_channels(VALUES[0])


def test_all_zero_maps_render_without_nan_or_warnings():
    zeros = np.zeros((3, 6, 8), np.float32)
    with np.errstate(all="raise"):
        assert not np.isnan(normalize(reduce_channels(zeros))).any()
        assert _decode(heatmap_png(reduce_channels(zeros))).shape == (6, 8, 3)
        assert _decode(overlay_png(np.zeros((6, 8, 3), np.uint8), zeros[0])).shape == (6, 8, 3)
        grey = _decode(signed_rgb_png(zeros))
    assert (grey == 128).all()


def test_percentile_clipping_saturates_the_top():
    map2d = np.arange(100, dtype=np.float32).reshape(10, 10)
    unit = normalize(map2d, clip_percentile=90)
    top = np.percentile(map2d, 90)
    np.testing.assert_allclose(unit, np.clip(map2d / top, 0, 1), rtol=1e-6)
    assert (unit[map2d >= top] == 1).all() and unit.min() == 0
    np.testing.assert_allclose(normalize(map2d, 100), map2d / 99, rtol=1e-6)


def test_one_hot_spot_survives_percentile_clipping():
    map2d = np.zeros((10, 10), np.float32)
    map2d[3, 4] = 5.0  # the 99.5th percentile is 0: the scale falls back to the maximum
    unit = normalize(map2d)
    assert unit[3, 4] == 1 and unit.sum() == 1


def test_pngs_decode_to_the_map_size():
    map2d = reduce_channels(VALUES)
    heat = _decode(heatmap_png(map2d))
    assert heat.shape == (5, 7, 3) and heat.dtype == np.uint8
    rgb = np.full((5, 7, 3), 255, np.uint8)
    assert _decode(overlay_png(rgb, map2d)).shape == (5, 7, 3)
    assert _decode(signed_rgb_png(VALUES)).shape == (5, 7, 3)
    assert _decode(colorbar_png(64, 4)).shape == (4, 64, 3)


def test_heatmap_pixels_are_the_colour_map_of_the_normalized_map():
    map2d = reduce_channels(VALUES)
    expected = INFERNO[np.rint(normalize(map2d, 90) * 255).astype(np.uint8)]
    np.testing.assert_array_equal(_decode(heatmap_png(map2d, 90)), expected)


def test_overlay_keeps_the_picture_where_attribution_is_zero():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    map2d = np.zeros((5, 7), np.float32)
    map2d[2, 3] = 1.0
    out = _decode(overlay_png(rgb, map2d))
    mask = map2d == 0
    np.testing.assert_array_equal(out[mask], rgb[mask])
    assert not np.array_equal(out[2, 3], rgb[2, 3])


def test_signed_rgb_is_grey_at_zero_and_symmetric():
    values = np.zeros((3, 4, 4), np.float32)
    values[0, 0, 0], values[1, 1, 1], values[2, 2, 2] = 1.0, -1.0, 0.5
    pixels = _decode(signed_rgb_png(values, clip_percentile=100)).astype(int)
    expected = np.rint(255 * np.clip(0.5 + values / 2, 0, 1)).transpose(1, 2, 0)
    np.testing.assert_array_equal(pixels, expected)
    assert pixels[3, 3].tolist() == [128, 128, 128]
    assert pixels[0, 0, 0] == 255 and pixels[1, 1, 1] == 0


def test_signed_rgb_of_one_channel_is_grey_scale():
    values = np.random.default_rng(2).normal(size=(1, 4, 5)).astype(np.float32)
    pixels = _decode(signed_rgb_png(values))
    assert pixels.shape == (4, 5, 3)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_uint16_grey_is_a_16_bit_png_whose_samples_are_kept_exactly():
    pixels = np.array([[0, 1, 255, 256], [4097, 32768, 65534, 65535]], dtype=np.uint16)
    png = encode_png(pixels)
    assert png[24:26] == b"\x10\x00"  # IHDR: bit depth 16, colour type 0 (grey)
    decoded = Image.open(io.BytesIO(png))
    assert decoded.mode == "I;16" and np.array_equal(np.asarray(decoded), pixels)
