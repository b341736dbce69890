"""Rank correlation, SSIM and cosine against SciPy, scikit-image and known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from worker.kinds.attribution.audit.similarity import cosine, spearman, ssim


@pytest.mark.parametrize("seed", range(4))
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, (12, 12)).astype(float)  # many ties
    b = a + rng.integers(0, 3, (12, 12))
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic)


def test_spearman_of_a_monotone_transform_is_one_and_of_a_reversal_minus_one():
    a = np.random.default_rng(5).random((8, 8))
    assert spearman(a, np.exp(3 * a)) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_spearman_of_a_constant_map_is_none():
    assert spearman(np.ones((4, 4)), np.random.default_rng(0).random((4, 4))) is None


def test_ssim_is_one_for_maps_equal_up_to_scale_and_lower_otherwise():
    a = np.random.default_rng(6).random((32, 32))
    assert ssim(a, 7 * a) == pytest.approx(1.0)
    assert ssim(a, np.random.default_rng(7).random((32, 32))) < 0.2


def test_cosine_by_hand_and_of_zero():
    assert cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(np.sqrt(0.5))
    assert cosine(np.zeros(3), np.ones(3)) is None
