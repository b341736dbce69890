"""Thumbnails are exact area averages of the relevance, for any input size."""

from __future__ import annotations

import numpy as np
import pytest

from worker.audit.thumbnails import area_resize, area_weights, thumbnail


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


@pytest.mark.parametrize(("source", "target"), [(224, 32), (299, 32), (17, 32), (50, 7)])
def test_area_weights_average_and_preserve_the_mean(source, target):
    weights = area_weights(source, target)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # Each source pixel contributes its full length overall: columns sum to target/source.
    np.testing.assert_allclose(weights.sum(axis=0), target / source)


def test_non_square_maps_are_resized_on_each_axis():
    r = np.random.default_rng(3).random((64, 96))
    expected = r.reshape(32, 2, 32, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(r), expected, rtol=1e-6)
