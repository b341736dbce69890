"""What a visualization's objective curve comes to: the figures its report and results file give.

A curve holds one value per step (value i was measured at step i + 1, on that step's
transformed view before the update), so its last value is as noisy as any one step:
- `final`: the last value, as v1 reports it;
- `final_mean`: the mean of the last 5 % of the steps (at least one), the level it ended at;
- `best`: the best value and its step (1-based; the first such step on a tie): the highest,
  or for an objective the optimization lowers (an inversion's distance) the lowest. Values
  that are not finite are passed over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TAIL_PARTS = 20  # the tail is 1/20 (5 %) of the steps


def tail_steps(steps: int) -> int:
    """How many of the last steps `final_mean` averages: 5 % of them, rounded up, at least 1
    (counted in whole numbers, so no float product rounds up a step too many)."""
    return max(1, -(-steps // TAIL_PARTS))


@dataclass(frozen=True)
class CurveSummary:
    """One curve's figures; all None for a curve without a step."""

    steps: int
    final: float | None
    final_mean: float | None
    best: float | None
    best_step: int | None

    def report_fields(self) -> dict[str, Any]:
        """The fields of the curve's entry in a visualize report."""
        best = None if self.best is None else {"value": self.best, "step": self.best_step}
        return {"final": self.final, "final_mean": self.final_mean, "best": best}


def summarize(curve: Sequence[float], *, minimize: bool = False) -> CurveSummary:
    """The figures of `curve`; `minimize` for an objective that is lowered."""
    if not curve:
        return CurveSummary(0, None, None, None, None)
    tail = curve[-tail_steps(len(curve)):]
    finite = [(v, i) for i, v in enumerate(curve) if math.isfinite(v)]
    best = best_step = None
    if finite:  # each key breaks a tie towards the earlier step
        best, at = (min(finite) if minimize else max(finite, key=lambda vi: (vi[0], -vi[1])))
        best_step = at + 1
    return CurveSummary(len(curve), curve[-1], sum(tail) / len(tail), best, best_step)
