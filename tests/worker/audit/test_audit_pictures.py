"""The report's pictures decode, have the expected size, and outline the object."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.media.renderings import Rendering
from worker.kinds.attribution.audit.pictures import (
    MEAN_MAP_SCALE,
    OUTLINE_RGB,
    mean_map_png,
    outline,
)
from worker.kinds.attribution.audit.pictures import suspect_overlay_png as overlay
from worker.kinds.attribution.audit.regions import Region


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"))


def test_a_mean_map_is_drawn_enlarged_without_smoothing():
    mean_map = np.zeros((32, 32), np.float32)
    mean_map[3, 5] = 1.0
    pixels = decode(mean_map_png(mean_map))
    side = 32 * MEAN_MAP_SCALE
    assert pixels.shape == (side, side, 3)
    block = pixels[3 * MEAN_MAP_SCALE:4 * MEAN_MAP_SCALE, 5 * MEAN_MAP_SCALE:6 * MEAN_MAP_SCALE]
    assert (block == block[0, 0]).all() and not (block[0, 0] == pixels[0, 0]).all()


def test_the_outline_of_a_box_is_its_edge():
    mask = np.zeros((10, 10), bool)
    mask[2:7, 3:9] = True
    edge = outline(mask)
    inner = np.zeros_like(mask)
    inner[3:6, 4:8] = True
    np.testing.assert_array_equal(edge, mask & ~inner)


def test_an_overlay_draws_the_object_outline():
    rgb = np.full((16, 16, 3), 128, np.uint8)
    values = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True
    pixels = decode(overlay(rgb, values, Region(mask), Rendering()))
    assert pixels.shape == (16, 16, 3)
    assert (pixels[outline(mask)] == OUTLINE_RGB).all()
    assert not (pixels[~outline(mask)] == OUTLINE_RGB).all(axis=1).any()
    plain = decode(overlay(rgb, values, None, Rendering()))
    np.testing.assert_array_equal(plain[~outline(mask)], pixels[~outline(mask)])


@pytest.mark.parametrize(("render", "kind"), [("heatmap", "overlay"), ("signed", "png"),
                                              ("cam", "png")])
def test_a_suspect_is_drawn_as_its_output_draws_it(render, kind):
    """The job's own rendering (its `reduce`, not a sum over channels; the method's
    `render`), the object outlined on top."""
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    values = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True
    drawing = Rendering(render, reduce="max_abs", grid=(4, 4))
    pixels = decode(overlay(rgb, values, Region(mask), drawing))
    expected, _ = drawing.pixels(kind, values, rgb)
    edge = outline(mask)
    np.testing.assert_array_equal(pixels[~edge], expected[~edge])
    assert (pixels[edge] == OUTLINE_RGB).all()
