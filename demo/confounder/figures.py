"""The three figures the planted-confounder demo must reach, from an audit report.

One definition for both runs of the demo: the in-process audit (`demo.confounder.audit`)
and the audit through the service (`demo.confounder.service`), which reads the same report
from the API and the per-item metrics from the job's results file. Needs numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from demo.confounder.data import MARKED_CLASS

TOP = 20


@dataclass(frozen=True)
class Figures:
    """The three figures the demo must reach, and the baseline to read the third against."""

    precision_at_20: float  # marked pictures among the 20 top suspects
    purity: float  # marked share of the class-0 cluster holding most marked pictures
    marked_in_that_cluster: float  # the share of class-0 marked pictures that cluster holds
    clean_energy_in_box: float  # mean energy_in_box of clean pictures (the first method)
    baseline_energy_in_box: float  # the centre-Gaussian map's, on the same pictures

    def lines(self) -> list[str]:
        """The figures as the demo prints them."""
        return [
            f"precision at {TOP} of marked pictures among the suspects: "
            f"{self.precision_at_20:.2f}",
            f"purity of the class-{MARKED_CLASS} cluster holding most marked pictures: "
            f"{self.purity:.2f} (it holds {self.marked_in_that_cluster:.0%} of them)",
            f"energy_in_box of clean pictures: {self.clean_energy_in_box:.2f} "
            f"(centre-Gaussian baseline {self.baseline_energy_in_box:.2f})",
        ]


def figures(data: Mapping[str, Any], marked: np.ndarray, energy: np.ndarray,
            baseline: np.ndarray) -> Figures:
    """The demo's figures from a report, which items carry the mark, and the first method's
    (and the baseline's) energy_in_box per item (NaN where undefined), all by item index."""
    top = data["suspects"][:TOP]
    precision = float(np.mean([marked[s["index"]] for s in top])) if top else 0.0
    purity = held = 0.0
    first = data["methods"][0]["position"]
    for group in data["clusters"]:
        if group["class"] != MARKED_CLASS or group["position"] != first:
            continue
        members = [np.asarray(c["members"], dtype=int) for c in group["clusters"]]
        counts = [int(marked[m].sum()) for m in members]
        best = int(np.argmax(counts))
        purity = counts[best] / len(members[best])
        held = counts[best] / sum(counts) if sum(counts) else 0.0
    clean = ~marked
    return Figures(precision, purity, held, float(np.nanmean(energy[clean])),
                   float(np.nanmean(baseline[clean])))


def is_marked(item_id: str | None) -> bool:
    """Whether a test picture carries the mark, from its id (`test-0007-marked`)."""
    return bool(item_id) and item_id.endswith("marked")


def _value(row: Mapping[str, Any], name: str) -> float:
    value = row.get(name)
    return np.nan if value is None else float(value)


def from_results(data: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> Figures:
    """The figures from a job's report and its results rows (one per item and output, with
    `index`, `id`, `position`, `energy_in_box` and `baseline_energy_in_box`)."""
    rows = list(rows)
    n = 1 + max(int(r["index"]) for r in rows)
    marked = np.zeros(n, dtype=bool)
    energy = np.full(n, np.nan)
    baseline = np.full(n, np.nan)
    first = data["methods"][0]["position"]
    for row in rows:
        index = int(row["index"])
        marked[index] = is_marked(row.get("id"))
        if row.get("position") == first:
            energy[index] = _value(row, "energy_in_box")
            baseline[index] = _value(row, "baseline_energy_in_box")
    return figures(data, marked, energy, baseline)
