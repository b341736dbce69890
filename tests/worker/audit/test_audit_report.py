"""The report from streamed rows: every section against figures computed here by hand."""

from __future__ import annotations

import io
import json
import random
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from worker.kinds.attribution.audit.baseline import baseline_metrics
from worker.kinds.attribution.audit.dependence import InputDependence
from worker.kinds.attribution.audit.report import SUSPECTS, ReportBuilder
from worker.kinds.attribution.audit.sanity import SanityResult, Verdict
from worker.kinds.attribution.audit.spray import Cluster, Clustering
from worker.kinds.attribution.audit.suspects import SUSPECT_AT

SIDE = 32
NAMES = ("cat", "dog", "cow")
TOP_LEVEL = {"kind", "counts", "accuracy", "confusions", "methods", "suspects",
             "suspect_threshold", "clusters", "input_dependence"}
# index: label, predicted, then per method position (energy, hit, border, concentration)
ITEMS = {
    0: (0, 0, [(0.6, True, 0.10, 0.5), (0.7, True, 0.05, 0.6)]),
    1: (0, 1, [(0.2, False, 0.40, 0.4), (0.3, False, 0.30, 0.7)]),
    2: (1, 1, [(0.1, False, 0.60, 0.3), (0.5, True, 0.10, 0.5)]),
    3: (1, 1, [(0.8, True, 0.05, 0.6), (0.9, True, 0.02, 0.8)]),
    4: (2, 0, [(None, None, 0.20, 0.5), (None, None, 0.30, 0.4)]),
    5: (None, 2, [(0.4, True, 0.15, 0.5), (0.35, False, 0.50, 0.6)]),
}
METHODS = ("gradient", "guided_backprop")


def rows() -> list[dict]:
    out = []
    for index, (label, predicted, outputs) in ITEMS.items():
        for position, (energy, hit, border, concentration) in enumerate(outputs):
            out.append({
                "index": index, "id": f"item-{index}", "uri": f"s3://b/{index}.png",
                "label": label, "predicted": predicted, "method": METHODS[position],
                "position": position, "energy_in_box": energy, "pointing_hit": hit,
                "border_energy": border, "concentration": concentration,
                "baseline_energy_in_box": None if energy is None else 0.3,
                "baseline_pointing_hit": None if energy is None else index % 2 == 0,
                "thumbnail": np.zeros((32, 32), np.float32),  # ignored by the builder
            })
    out.append({"index": 6, "id": "item-6", "method": None, "error": "undecodable"})
    return out


def clustering() -> Clustering:
    """Class 1 (items 2 and 3 predicted dog, plus item 1) in two clusters, for method 0."""
    flat = np.ones((32, 32), np.float32)
    return Clustering(
        clusters=(Cluster(np.array([3, 1]), 2 / 3, flat), Cluster(np.array([2]), 1 / 3, flat)),
        labels=np.array([1, 0, 0]), eigenvalues=np.array([1.0, 0.99, 0.2]), sampled=3,
    )


def build(shuffle: int | None = None, **kwargs):
    builder = ReportBuilder(input_size=SIDE, class_names=NAMES)
    stream = rows()
    if shuffle is not None:
        random.Random(shuffle).shuffle(stream)
    for row in stream:
        builder.add(row)
    return builder.build(**kwargs)


def test_top_level_keys_and_kind():
    data = build().data
    assert set(data) == TOP_LEVEL and data["kind"] == "attribution"
    sanity = SanityResult(2, ("fc",), {"gradient": [0.1]}, {"gradient": [0.2]},
                          {"gradient": Verdict("passes", "ok")})
    assert build(sanity=sanity).data["sanity"] == sanity.to_json()


def test_the_json_is_strict_json():
    json.dumps(build(clusters={(0, 1): clustering()}).data, allow_nan=False)


def test_counts():
    assert build().data["counts"] == {"items": 7, "succeeded": 6, "failed": 1, "labelled": 5,
                                      "outputs": 12}


def test_lower_ranks_of_a_topk_target_are_left_out():
    """Each item's rank-0 map is audited once; ranks 1.. (other classes) change nothing."""
    ranked = [{**row, "rank": 0} if row["method"] else row for row in rows()]
    lower = [{**row, "rank": rank, "energy_in_box": 0.0, "pointing_hit": False,
              "border_energy": 1.0} for row in ranked if row["method"] for rank in (1, 2)]
    builder = ReportBuilder(input_size=SIDE, class_names=NAMES)
    for row in ranked + lower:
        builder.add(row)
    got = builder.build(clusters={(0, 1): clustering()}).data
    assert got == build(clusters={(0, 1): clustering()}).data


def test_accuracy_overall_and_per_class():
    accuracy = build().data["accuracy"]
    assert accuracy["overall"] == pytest.approx(3 / 5)
    assert accuracy["per_class"] == [
        {"class": 0, "name": "cat", "items": 2, "correct": 1, "accuracy": 0.5},
        {"class": 1, "name": "dog", "items": 2, "correct": 2, "accuracy": 1.0},
        {"class": 2, "name": "cow", "items": 1, "correct": 0, "accuracy": 0.0},
    ]


def test_confusions_most_frequent_first():
    assert build().data["confusions"] == [
        {"label": 0, "label_name": "cat", "predicted": 1, "predicted_name": "dog", "count": 1,
         "share_of_label": 0.5},
        {"label": 2, "label_name": "cow", "predicted": 0, "predicted_name": "cat", "count": 1,
         "share_of_label": 1.0},
    ]


@pytest.mark.parametrize("position", [0, 1])
def test_method_figures_against_numpy(position):
    entry = build().data["methods"][position]
    assert entry["method"] == METHODS[position] and entry["outputs"] == 6
    outputs = [item[2][position] for item in ITEMS.values()]
    for k, name in ((0, "energy_in_box"), (2, "border_energy"), (3, "concentration")):
        values = np.array([o[k] for o in outputs if o[k] is not None])
        figures = entry["metrics"][name]
        assert figures["count"] == len(values)
        assert figures["mean"] == pytest.approx(values.mean(), abs=1e-6)
        for q in (10, 50, 90):
            assert figures[f"p{q}"] == pytest.approx(np.percentile(values, q), abs=1e-6)
    hits = [o[1] for o in outputs if o[1] is not None]
    assert entry["pointing_accuracy"] == pytest.approx(np.mean(hits))


def test_the_baseline_beside_each_method():
    baseline = build().data["methods"][0]["baseline"]
    assert baseline["metrics"]["energy_in_box"]["mean"] == pytest.approx(0.3)
    with_box = [i for i, item in ITEMS.items() if item[2][0][0] is not None]
    assert baseline["pointing_accuracy"] == pytest.approx(np.mean([i % 2 == 0 for i in with_box]))
    constant = baseline_metrics(None, SIDE)
    assert baseline["metrics"]["border_energy"]["p50"] == pytest.approx(
        constant["border_energy"], abs=1e-6)
    assert baseline["metrics"]["concentration"]["mean"] == pytest.approx(
        constant["concentration"], abs=1e-6)


def expected_scores(atypical: dict[tuple[int, int], float]) -> dict[int, tuple[float, int]]:
    """Each item's best (score, position), by the documented formula written out here."""
    borders = {p: np.median([item[2][p][2] for item in ITEMS.values()]) for p in (0, 1)}
    best: dict[int, tuple[float, int]] = {}
    for index, (label, predicted, outputs) in ITEMS.items():
        for p, (energy, hit, border, _) in enumerate(outputs):
            off = (1 - energy) if hit is False else 0.0
            excess = max(0.0, (border - borders[p]) / (1 - borders[p]))
            weight = 0.5 if label is not None and label != predicted else 1.0
            score = weight * (off + excess + atypical.get((index, p), 0.0))
            if index not in best or score > best[index][0]:
                best[index] = (score, p)
    return best


def test_suspects_rank_items_by_their_best_output():
    suspects = build().data["suspects"]
    best = expected_scores({})
    order = sorted(best, key=lambda i: (-best[i][0], i))
    assert [s["index"] for s in suspects] == order
    for s in suspects:
        assert s["score"] == pytest.approx(best[s["index"]][0], abs=1e-6)
        assert s["position"] == best[s["index"]][1]
        assert s["method"] == METHODS[s["position"]]
        assert s["id"] == f"item-{s['index']}"
        assert s["input"] == {"uri": f"s3://b/{s['index']}.png"}
        assert s["overlay"] is None
    top = suspects[0]
    assert top["index"] == 2 and top["reasons"][0].startswith("the relevance peaks off")


def test_clusters_join_their_members_rows():
    data = build(clusters={(0, 1): clustering()}).data
    (group,) = data["clusters"]
    assert (group["class"], group["class_name"], group["method"], group["size"]) == \
        (1, "dog", "gradient", 3)
    big, small = group["clusters"]
    assert big["members"] == [3, 1] and small["members"] == [2]
    assert big["metrics"]["energy_in_box"] == pytest.approx((0.8 + 0.2) / 2)
    assert big["metrics"]["pointing_accuracy"] == pytest.approx(0.5)
    # Atypicality: the mean of off_object + border over the cluster minus the rest's.
    typical = np.median([item[2][0][2] for item in ITEMS.values()])

    def value(index):
        energy, hit, border, _ = ITEMS[index][2][0]
        return ((1 - energy) if hit is False else 0.0) + max(0, (border - typical) / (1 - typical))

    expected = max(0.0, value(2) - (value(3) + value(1)) / 2)
    assert small["atypicality"] == pytest.approx(expected, abs=1e-6)
    assert big["atypicality"] == 0.0
    # The cluster's term reaches the suspects' scores.
    suspects = {s["index"]: s for s in data["suspects"]}
    best = expected_scores({(2, 0): expected})
    assert suspects[2]["score"] == pytest.approx(best[2][0], abs=1e-6)
    assert any("strategy cluster (1 maps, 33% of class dog)" in r for r in suspects[2]["reasons"])


def test_pictures_are_pngs_named_in_the_json():
    calls = []

    def overlay(index, position):
        calls.append((index, position))
        return Image_bytes()

    report = build(clusters={(0, 1): clustering()}, overlay=overlay)
    names = [c["mean_map"] for c in report.data["clusters"][0]["clusters"]]
    names += [s["overlay"] for s in report.data["suspects"]]
    assert set(names) == set(report.pictures)
    for name in names:
        with Image.open(io.BytesIO(report.pictures[name])) as picture:
            picture.load()
    assert calls == [(s["index"], s["position"]) for s in report.data["suspects"]]


def Image_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_input_dependence_is_listed_per_method():
    warning = "deconvnet: ... (measured) ..."
    data = build(input_dependence={1: InputDependence(0.99, 10, "any", warning),
                                   0: InputDependence(0.1, 10, "any", None)}).data
    assert [d["position"] for d in data["input_dependence"]] == [0, 1]
    assert data["input_dependence"][1] == {"method": "guided_backprop", "position": 1,
                                           "median_cosine": 0.99, "pairs": 10, "scope": "any",
                                           "warning": warning}


def test_row_order_does_not_matter():
    kwargs = {"clusters": {(0, 1): clustering()}}
    assert build(shuffle=1, **kwargs).data == build(**kwargs).data


def test_positions_default_to_the_order_methods_first_appear():
    builder = ReportBuilder(input_size=SIDE)
    for row in rows():
        row.pop("position", None)
        builder.add(row)
    assert [m["method"] for m in builder.build().data["methods"]] == list(METHODS)


def test_an_empty_job_has_an_empty_report():
    data = ReportBuilder(input_size=SIDE).build().data
    assert data["counts"]["items"] == 0 and data["suspects"] == [] and data["methods"] == []
    assert data["accuracy"]["overall"] is None


def test_at_most_fifty_suspects_each_item_once():
    builder = ReportBuilder(input_size=SIDE)
    for index in range(80):
        for position in range(2):
            builder.add({"index": index, "method": METHODS[position], "position": position,
                         "energy_in_box": 0.1, "pointing_hit": False, "border_energy": 0.2,
                         "concentration": 0.5})
    suspects = builder.build().data["suspects"]
    assert len(suspects) == SUSPECTS
    assert len({s["index"] for s in suspects}) == SUSPECTS


def test_the_report_names_the_suspect_threshold_and_keeps_the_suspects_below_it():
    builder = ReportBuilder(input_size=SIDE)
    # Item 0's peak misses the object (off_object 0.9); item 1's hits it (score 0).
    for index, hit in ((0, False), (1, True)):
        builder.add({"index": index, "method": "gradient", "position": 0,
                     "energy_in_box": 0.1, "pointing_hit": hit, "border_energy": 0.2,
                     "concentration": 0.5})
    data = builder.build().data
    assert data["suspect_threshold"] == SUSPECT_AT
    assert [(s["index"], s["score"]) for s in data["suspects"]] == [(0, 0.9), (1, 0.0)]
    assert data["suspects"][0]["reasons"] and not data["suspects"][1]["reasons"]


def test_memory_per_row_is_a_few_dozen_bytes():
    builder = ReportBuilder(input_size=SIDE)
    row = {"method": "gradient", "position": 0, "label": 1, "predicted": 1, "id": "x" * 30,
           "energy_in_box": 0.5, "pointing_hit": True, "border_energy": 0.2,
           "concentration": 0.4, "baseline_energy_in_box": 0.3, "baseline_pointing_hit": True}
    tracemalloc.start()
    for index in range(50_000):
        builder.add({**row, "index": index})
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current / 50_000 < 120  # typed arrays and packed ids, no per-row Python objects
