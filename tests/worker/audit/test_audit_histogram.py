"""Each summarised metric's 20-bin histogram over [0, 1], beside its mean and quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from worker.kinds.attribution.audit.report import HISTOGRAM_BINS, SUMMARISED, ReportBuilder, summary

EDGES = [i / 20 for i in range(21)]


def test_hand_made_values_fall_in_the_bins_their_definition_names():
    values = np.array([0.0, 0.01, 0.049, 0.051, 0.5, 0.52, 0.97, 0.999, 1.0, np.nan])
    figures = summary(values)
    assert figures["histogram"]["bins"] == pytest.approx(EDGES)
    counts = [0] * 20
    for bin_index in (0, 0, 0, 1, 10, 10, 19, 19, 19):  # 1.0 belongs to the last, closed bin
        counts[bin_index] += 1
    assert figures["histogram"]["counts"] == counts
    assert sum(figures["histogram"]["counts"]) == figures["count"] == 9


def test_random_values_against_numpy_histogram():
    values = np.random.default_rng(0).beta(2, 5, 1000)
    values[::7] = np.nan
    defined = values[~np.isnan(values)]
    want, _ = np.histogram(defined, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    assert summary(values)["histogram"]["counts"] == want.tolist()


def test_no_defined_value_gives_empty_bins():
    figures = summary(np.array([np.nan, np.nan]))
    assert figures["count"] == 0
    assert figures["histogram"] == {"bins": pytest.approx(EDGES), "counts": [0] * 20}


def test_every_method_and_its_baseline_carry_a_histogram_per_metric():
    builder = ReportBuilder(input_size=32)
    energies = [0.12, 0.33, 0.34, 0.81, None]
    for index, energy in enumerate(energies):
        builder.add({"index": index, "method": "gradient", "position": 0, "label": 0,
                     "predicted": 0, "energy_in_box": energy,
                     "pointing_hit": None if energy is None else energy > 0.3,
                     "border_energy": 0.1, "concentration": 0.47,
                     "baseline_energy_in_box": None if energy is None else 0.3,
                     "baseline_pointing_hit": None if energy is None else True})
    (method,) = builder.build().data["methods"]
    own = method["metrics"]["energy_in_box"]["histogram"]["counts"]
    assert own[2] == 1 and own[6] == 2 and own[16] == 1 and sum(own) == 4
    assert method["metrics"]["border_energy"]["histogram"]["counts"][2] == 5
    assert method["metrics"]["concentration"]["histogram"]["counts"][9] == 5
    baseline = method["baseline"]["metrics"]
    assert baseline["energy_in_box"]["histogram"]["counts"][6] == 4
    for name in SUMMARISED:
        assert sum(baseline[name]["histogram"]["counts"]) == baseline[name]["count"]
