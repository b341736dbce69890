"""Baselines and fills against independent computations: scipy's Gaussian filter, and the
conventions' pixel definitions written out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_testing import IMAGENET_MEAN as MEAN
from engine_testing import IMAGENET_STD as STD
from engine_testing import scipy_blur

from shared.errors import InputError
from worker.engine.baselines import (
    BLUR_SIGMA_FRACTION,
    Normalization,
    blurred,
    gaussian_blur,
    uniform,
    value_range,
)


@pytest.mark.parametrize(("side", "sigma"), [(32, 1.6), (20, 3.0), (6, 2.0)])
def test_gaussian_blur_matches_scipy(side, sigma):
    x = torch.randn(2, 3, side, side + 3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(gaussian_blur(x, sigma).numpy(), scipy_blur(x.numpy(), sigma),
                               rtol=1e-5, atol=1e-6)


def test_the_blurred_baseline_uses_five_percent_of_the_side():
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    assert BLUR_SIGMA_FRACTION == 0.05
    np.testing.assert_allclose(blurred(x).numpy(), scipy_blur(x.numpy(), 2.0), rtol=1e-5,
                               atol=1e-6)


def test_blurring_commutes_with_the_normalization():
    pixels = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    norm = Normalization.of(MEAN, STD)
    np.testing.assert_allclose(blurred(norm.normalize(pixels)).numpy(),
                               norm.normalize(blurred(pixels)).numpy(), rtol=1e-5, atol=1e-5)


def test_black_is_pixel_zero_normalized():
    like = torch.randn(2, 3, 4, 4)
    black = Normalization.of(MEAN, STD).black(like)
    expected = -np.asarray(MEAN) / np.asarray(STD)
    np.testing.assert_allclose(black[1, :, 2, 3].numpy(), expected, rtol=1e-6)
    assert torch.equal(Normalization().black(like), torch.zeros_like(like))


def test_uniform_is_seeded_pixels_in_the_unit_range_normalized():
    norm = Normalization.of(MEAN, STD)
    first = uniform((3, 8, 8), torch.Generator().manual_seed(5), norm, torch.device("cpu"))
    again = uniform((3, 8, 8), torch.Generator().manual_seed(5), norm, torch.device("cpu"))
    assert torch.equal(first, again)
    pixels = first.numpy() * np.asarray(STD)[:, None, None] + np.asarray(MEAN)[:, None, None]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert pixels.std() > 0.2  # uniform on [0, 1]: about 0.29


def test_value_range_is_per_image_over_all_channels():
    x = torch.zeros(2, 3, 2, 2)
    x[0, 1, 0, 0], x[0, 2, 1, 1] = 4.0, -1.0
    x[1, 0, 0, 1] = 0.5
    assert value_range(x).tolist() == [5.0, 0.5]


def test_a_normalization_needs_both_halves_and_matching_channels():
    with pytest.raises(ValueError, match="both"):
        Normalization.of(MEAN, None)
    with pytest.raises(ValueError, match="positive std"):
        Normalization.of(MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(InputError, match="1 channels"):
        Normalization.of(MEAN, STD).normalize(torch.zeros(1, 1, 4, 4))
