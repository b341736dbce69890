"""A visualization curve's figures (`final`, `final_mean`, `best`) on curves worked out by hand."""

from __future__ import annotations

import math

import pytest

from shared.results.curves import CurveSummary, summarize, tail_steps

NAN = float("nan")


def test_a_noisy_end_keeps_final_and_adds_the_tail_mean_and_the_best_step():
    # 100 steps rising 1..100, a spike of 162 at step 31 and a dip to 79.2 at the last step:
    # the tail is the last 5 steps (96, 97, 98, 99, 79.2).
    curve = [float(v) for v in range(1, 101)]
    curve[30] = 162.0
    curve[99] = 79.2
    summary = summarize(curve)
    assert summary.steps == 100
    assert summary.final == 79.2
    assert summary.final_mean == pytest.approx((96 + 97 + 98 + 99 + 79.2) / 5)
    assert (summary.best, summary.best_step) == (162.0, 31)
    assert summary.report_fields() == {"final": 79.2, "final_mean": summary.final_mean,
                                       "best": {"value": 162.0, "step": 31}}


@pytest.mark.parametrize(("steps", "tail"), [(1, 1), (19, 1), (20, 1), (21, 2), (40, 2),
                                             (41, 3), (512, 26), (2000, 100)])
def test_the_tail_is_five_percent_of_the_steps_rounded_up_and_at_least_one(steps, tail):
    assert tail_steps(steps) == tail


def test_a_short_curve_averages_its_last_step_alone():
    summary = summarize([1.0, 5.0, 3.0])
    assert (summary.final, summary.final_mean, summary.best, summary.best_step) == (
        3.0, 3.0, 5.0, 2)


def test_a_tie_goes_to_the_earlier_step_either_way():
    assert summarize([1.0, 4.0, 2.0, 4.0]).best_step == 2
    assert summarize([3.0, 1.0, 2.0, 1.0], minimize=True).best_step == 2


def test_an_inversion_is_best_where_its_distance_is_lowest():
    # The relative distance falls: best is its minimum, at step 4.
    summary = summarize([1.1, 0.4, 0.2, 0.05, 0.07], minimize=True)
    assert (summary.best, summary.best_step) == (0.05, 4)
    assert summary.final_mean == 0.07


def test_values_that_are_not_finite_are_passed_over_for_the_best():
    summary = summarize([1.0, NAN, 7.0, math.inf, 2.0])
    assert (summary.best, summary.best_step) == (7.0, 3)
    assert summarize([NAN, NAN]).best is None


def test_a_curve_without_steps_has_no_figures():
    assert summarize([]) == CurveSummary(0, None, None, None, None)
    assert summarize([]).report_fields() == {"final": None, "final_mean": None, "best": None}
