"""Each metric against hand-made maps with known answers and an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

from worker.kinds.attribution.audit.metrics import (
    METRICS,
    border_width,
    gini,
    item_metrics,
    pointing_tolerance,
)
from worker.kinds.attribution.audit.regions import Region


def box_mask(side: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((side, side), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def one_pixel(side: int, y: int, x: int, channels: int = 3) -> np.ndarray:
    values = np.zeros((channels, side, side), np.float32)
    values[1, y, x] = -2.0  # negative: relevance is the magnitude
    return values


# --- independent references (plain loops and the textbook formulas) ---------------------------

def reference(values: np.ndarray, mask: np.ndarray, side: int) -> dict:
    r = np.zeros((side, side))
    for c in range(values.shape[0]):
        r += np.abs(values[c].astype(np.float64))
    total = r.sum()
    width = round(0.1 * side)
    band = np.zeros((side, side), bool)
    band[:width], band[-width:], band[:, :width], band[:, -width:] = True, True, True, True
    ys, xs = np.nonzero(mask)
    tolerance = 15 * side / 224
    peaks = np.argwhere(r == r.max())
    hit = any(np.min((ys - py) ** 2 + (xs - px) ** 2) <= tolerance**2 for py, px in peaks)
    flat = r.ravel()
    n = flat.size
    mean_difference = np.abs(flat[:, None] - flat[None, :]).sum() / (n * n)
    return {
        "energy_in_box": r[mask].sum() / total,
        "pointing_hit": bool(hit),
        "border_energy": r[band].sum() / total,
        "concentration": mean_difference / (2 * flat.mean()) * n / (n - 1),
    }


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    side = int(rng.choice([20, 32, 40]))
    values = rng.normal(size=(3, side, side)).astype(np.float32)
    values *= rng.gamma(0.5, 1.0, (1, side, side)).astype(np.float32)  # uneven, peaked maps
    x0, y0 = rng.integers(0, side - 4, 2)
    x1, y1 = x0 + rng.integers(2, side - x0), y0 + rng.integers(2, side - y0)
    mask = box_mask(side, x0, y0, x1, y1)
    ours = item_metrics(values, mask, side)
    theirs = reference(values, mask, side)
    assert ours["pointing_hit"] is theirs["pointing_hit"]
    for name in ("energy_in_box", "border_energy", "concentration"):
        assert ours[name] == pytest.approx(theirs[name], rel=1e-6, abs=1e-9), name
    assert "reasons" not in ours


# --- known answers -----------------------------------------------------------------------------

def test_all_relevance_inside_the_box():
    side = 32
    mask = box_mask(side, 8, 8, 20, 20)
    values = np.zeros((3, side, side), np.float32)
    values[:, 8:20, 8:20] = 1.0
    m = item_metrics(values, mask, side)
    assert m["energy_in_box"] == 1.0
    assert m["pointing_hit"] is True
    assert m["border_energy"] == 0.0


def test_the_pointing_tolerance_is_15_px_at_224_scaled_with_the_side():
    assert pointing_tolerance(224) == 15
    assert pointing_tolerance(448) == 30
    assert pointing_tolerance(64) == pytest.approx(15 * 64 / 224)


@pytest.mark.parametrize("side", [224, 64])
def test_a_peak_within_the_tolerance_hits_and_one_beyond_misses(side):
    mask = box_mask(side, side // 2, side // 2, side // 2 + 4, side // 2 + 4)
    tolerance = pointing_tolerance(side)
    right = side // 2 + 3  # the box's last column
    inside = right + int(np.floor(tolerance))
    outside = right + int(np.floor(tolerance)) + 1
    row = side // 2 + 1
    assert item_metrics(one_pixel(side, row, inside), mask, side)["pointing_hit"] is True
    assert item_metrics(one_pixel(side, row, outside), mask, side)["pointing_hit"] is False
    # Diagonally the distance is Euclidean: (d, d) off the box's corner is d·√2 away.
    d = int(np.floor(tolerance / np.sqrt(2)))
    bottom = side // 2 + 3
    near = one_pixel(side, bottom + d, right + d)
    far = one_pixel(side, bottom + d + 1, right + d + 1)
    assert item_metrics(near, mask, side)["pointing_hit"] is True
    assert item_metrics(far, mask, side)["pointing_hit"] is False


def test_many_tied_maxima_take_the_distance_transform_with_the_same_answer():
    side = 64
    mask = box_mask(side, 40, 40, 50, 50)
    values = np.zeros((1, side, side), np.float32)
    values[0, :, :30] = 1.0  # 1,920 tied maxima, the nearest 10 px left of the box
    assert item_metrics(values, mask, side)["pointing_hit"] is False
    values[0, :, 30:37] = 1.0  # now the nearest is 4 px away (tolerance 4.29)
    assert item_metrics(values, mask, side)["pointing_hit"] is True
    for seed in range(3):  # and on random maps with many ties, against the reference
        rng = np.random.default_rng(seed)
        tied = rng.integers(0, 2, (3, side, side)).astype(np.float32)
        assert item_metrics(tied, mask, side)["pointing_hit"] is \
            reference(tied, mask, side)["pointing_hit"]


def test_a_single_pixel_has_concentration_one_and_a_uniform_map_zero():
    side = 16
    assert item_metrics(one_pixel(side, 3, 4), None, side)["concentration"] == pytest.approx(1.0)
    uniform = np.ones((3, side, side), np.float32)
    assert item_metrics(uniform, None, side)["concentration"] == pytest.approx(0.0, abs=1e-12)


def test_gini_of_two_values_by_hand():
    # x = (1, 3): mean difference |1-3|·2/4 = 1, mean 2 → G = 1/(2·2) = 0.25, ×n/(n-1) = 0.5.
    assert gini(np.array([1.0, 3.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        gini(np.zeros(4))


@pytest.mark.parametrize("side", [10, 32, 64, 224])
def test_a_uniform_map_puts_the_band_s_area_share_in_the_border(side):
    width = border_width(side)
    assert width == max(1, round(side / 10))
    expected = 1 - (side - 2 * width) ** 2 / side**2
    uniform = np.ones((1, side, side), np.float32)
    assert item_metrics(uniform, None, side)["border_energy"] == pytest.approx(expected)


def test_a_corner_mark_is_all_border_energy():
    side = 64
    values = np.zeros((3, side, side), np.float32)
    values[:, 1:6, 1:6] = 5.0
    m = item_metrics(values, box_mask(side, 20, 20, 40, 40), side)
    assert m["border_energy"] == 1.0
    assert m["energy_in_box"] == 0.0
    assert m["pointing_hit"] is False


def test_relevance_sums_channel_magnitudes():
    side = 8
    values = np.zeros((3, side, side), np.float32)
    values[0, 0, 0], values[1, 0, 0], values[2, 4, 4] = 1.0, -1.0, 1.5  # 2 at (0, 0), 1.5 inside
    m = item_metrics(values, box_mask(side, 2, 2, 6, 6), side)
    assert m["energy_in_box"] == pytest.approx(1.5 / 3.5)
    assert m["pointing_hit"] is False  # the peak is (0, 0), 2.8 px from the box (tolerance 0.5)


# --- undefined metrics carry a reason ----------------------------------------------------------

def test_without_a_region_the_box_metrics_are_none_with_a_reason():
    m = item_metrics(one_pixel(16, 3, 3), None, 16)
    assert m["energy_in_box"] is None and m["pointing_hit"] is None
    assert m["border_energy"] is not None and m["concentration"] is not None
    assert m["reasons"] == {"energy_in_box": "the item has no box or mask",
                            "pointing_hit": "the item has no box or mask"}


def test_a_region_cropped_away_passes_its_reason_on():
    m = item_metrics(one_pixel(16, 3, 3), Region(None, "the box lies outside the crop"), 16)
    assert m["reasons"]["energy_in_box"] == "the box lies outside the crop"


def test_an_all_zero_map_has_no_metrics():
    m = item_metrics(np.zeros((3, 16, 16), np.float32), box_mask(16, 2, 2, 8, 8), 16)
    assert all(m[name] is None for name in METRICS)
    assert set(m["reasons"]) == set(METRICS)
    assert "zero everywhere" in m["reasons"]["concentration"]


def test_a_map_with_nan_has_no_metrics():
    values = one_pixel(16, 3, 3)
    values[0, 0, 0] = np.nan
    m = item_metrics(values, None, 16)
    assert all(m[name] is None for name in METRICS)
    assert "non-finite" in m["reasons"]["border_energy"]


def test_an_empty_region_is_treated_as_no_region():
    m = item_metrics(one_pixel(16, 3, 3), np.zeros((16, 16), bool), 16)
    assert m["energy_in_box"] is None and "no input pixel" in m["reasons"]["energy_in_box"]


def test_shapes_that_do_not_fit_the_input_size_are_refused():
    with pytest.raises(ValueError, match="expected C×16×16"):
        item_metrics(np.zeros((3, 8, 8), np.float32), None, 16)
    with pytest.raises(ValueError, match="16×16"):
        item_metrics(one_pixel(16, 1, 1), np.ones((8, 8), bool), 16)
