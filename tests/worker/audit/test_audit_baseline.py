"""The centre-Gaussian baseline: σ = side / 4 around the centre, scored like any map."""

from __future__ import annotations

import numpy as np
import pytest

from worker.kinds.attribution.audit.baseline import baseline_metrics, centre_gaussian
from worker.kinds.attribution.audit.metrics import item_metrics


@pytest.mark.parametrize("side", [32, 63, 224])
def test_the_map_is_a_gaussian_of_a_quarter_side_at_the_centre(side):
    g = centre_gaussian(side)[0].astype(np.float64)
    c = (side - 1) / 2
    y, x = np.mgrid[:side, :side]
    expected = np.exp(-((y - c) ** 2 + (x - c) ** 2) / (2 * (side / 4) ** 2))
    np.testing.assert_allclose(g, expected, rtol=1e-6)
    assert centre_gaussian(side).shape == (1, side, side)


def test_the_cached_map_cannot_be_changed_by_a_caller():
    with pytest.raises(ValueError):
        centre_gaussian(16)[0, 0, 0] = 1.0


def test_a_centred_object_is_hit_and_a_corner_object_missed():
    side = 64
    centre = np.zeros((side, side), bool)
    centre[24:40, 24:40] = True
    corner = np.zeros((side, side), bool)
    corner[:8, :8] = True
    assert baseline_metrics(centre, side)["pointing_hit"] is True
    assert baseline_metrics(corner, side)["pointing_hit"] is False


def test_energy_in_box_by_hand():
    side = 32
    box = np.zeros((side, side), bool)
    box[4:20, 10:30] = True
    g = centre_gaussian(side)[0].astype(np.float64)
    assert baseline_metrics(box, side)["energy_in_box"] == pytest.approx(g[box].sum() / g.sum())


@pytest.mark.parametrize("side", [31, 64])
def test_baseline_metrics_are_item_metrics_of_the_gaussian(side):
    rng = np.random.default_rng(side)
    for _ in range(5):
        mask = np.zeros((side, side), bool)
        x0, y0 = rng.integers(0, side - 3, 2)
        mask[y0:y0 + rng.integers(1, side - y0), x0:x0 + rng.integers(1, side - x0)] = True
        ours = baseline_metrics(mask, side)
        theirs = item_metrics(centre_gaussian(side), mask, side)
        assert ours["pointing_hit"] is theirs["pointing_hit"]
        for name in ("energy_in_box", "border_energy", "concentration"):
            assert ours[name] == pytest.approx(theirs[name], rel=1e-9)


def test_without_a_region_only_border_and_concentration_remain():
    m = baseline_metrics(None, 32)
    assert m["energy_in_box"] is None and m["pointing_hit"] is None
    assert 0 < m["border_energy"] < 1 and 0 < m["concentration"] < 1
