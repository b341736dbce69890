"""Thumbnails are exact area averages of the relevance, for any input size."""

from __future__ import annotations

import numpy as np
import pytest

from worker.kinds.attribution.audit.thumbnails import area_resize, thumbnail


def relevance(values: np.ndarray) -> np.ndarray:
    return np.abs(values.astype(np.float64)).sum(axis=0)


@pytest.mark.parametrize("side", [32, 64, 224])
def test_whole_multiples_of_32_average_square_blocks(side):
    values = np.random.default_rng(side).normal(size=(3, side, side)).astype(np.float32)
    k = side // 32
    blocks = relevance(values).reshape(32, k, 32, k).mean(axis=(1, 3))
    out = thumbnail(values)
    assert out.shape == (32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, blocks, rtol=1e-6)


def test_a_side_of_48_averages_one_and_a_half_pixels_per_cell():
    # Independently: repeat each pixel twice (96 px), then average 3×3 blocks.
    values = np.random.default_rng(1).normal(size=(3, 48, 48)).astype(np.float32)
    upsampled = relevance(values).repeat(2, axis=0).repeat(2, axis=1)
    expected = upsampled.reshape(32, 3, 32, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(thumbnail(values), expected, rtol=1e-6)


def test_a_side_of_16_repeats_each_pixel_over_two_cells():
    r = np.random.default_rng(2).random((16, 16))
    np.testing.assert_allclose(area_resize(r), r.repeat(2, 0).repeat(2, 1), rtol=1e-6)


def overlap_weights(source: int, target: int) -> np.ndarray:
    """target×source: the length of each pixel's overlap with each cell, over the cell's."""
    w = np.zeros((target, source))
    cell = source / target
    for i in range(target):
        for j in range(source):
            w[i, j] = max(0.0, min((i + 1) * cell, j + 1) - max(i * cell, j)) / cell
    return w


@pytest.mark.parametrize(("height", "width"), [(224, 224), (299, 57), (17, 40), (50, 7)])
def test_any_size_matches_the_overlap_weighted_average(height, width):
    r = np.random.default_rng(height).random((height, width))
    expected = overlap_weights(height, 32) @ r @ overlap_weights(width, 32).T
    np.testing.assert_allclose(area_resize(r), expected, rtol=1e-5)
    assert area_resize(r).mean() == pytest.approx(r.mean(), rel=1e-5)


def test_non_square_maps_are_resized_on_each_axis():
    r = np.random.default_rng(3).random((64, 96))
    expected = r.reshape(32, 2, 32, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(r), expected, rtol=1e-6)
