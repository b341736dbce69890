"""The audit report of an attribution job, built from its result rows in bounded memory.

Rows (one per item and output, as in the results file) stream into `ReportBuilder.add`; it
keeps a few numbers per row in typed arrays and never a map. `build` then joins what was
computed elsewhere (SpRAy clusters per class, input dependence, the sanity check) and
returns the report's JSON with its pictures beside it (`Report.pictures`, PNG bytes by the
name the JSON uses). How to read the report is in docs/audits.md.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.spec.methods import MAX_METHODS
from worker.kinds.attribution.audit.baseline import baseline_metrics
from worker.kinds.attribution.audit.dependence import InputDependence
from worker.kinds.attribution.audit.metrics import METRICS
from worker.kinds.attribution.audit.pictures import mean_map_png
from worker.kinds.attribution.audit.sanity import SanityResult
from worker.kinds.attribution.audit.spray import Clustering
from worker.kinds.attribution.audit.suspects import (
    SUSPECT_AT,
    border_excess,
    cluster_atypicality,
    off_object,
    reasons,
    suspect_scores,
)

SUSPECTS = 50
CONFUSIONS = 20
HISTOGRAM_BINS = 20  # over [0, 1], the range of every summarised metric
SUMMARISED = ("energy_in_box", "border_energy", "concentration")
ROW_METRICS = ("energy_in_box", "pointing_hit", "border_energy", "concentration",
               "baseline_energy_in_box", "baseline_pointing_hit")
Overlay = Callable[[int, int], bytes]  # (item index, method position) -> PNG bytes


@dataclass(frozen=True)
class Report:
    """The report's JSON, and its pictures by the names the JSON gives them."""

    data: dict[str, Any]
    pictures: dict[str, bytes]


def _number(value: Any) -> float | None:
    """A JSON number (NaN and None become null)."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else round(value, 6)


def _metric(row: Mapping[str, Any], name: str) -> float:
    value = row.get(name)
    return float("nan") if value is None else float(value)


def histogram(defined: np.ndarray) -> dict[str, list]:
    """Counts of values in [0, 1] over `HISTOGRAM_BINS` equal bins: bin i holds
    i/n <= v < (i+1)/n, the last one also 1 (values outside [0, 1] count at the ends)."""
    n = HISTOGRAM_BINS
    bins = np.clip(np.floor(defined * n), 0, n - 1).astype(np.int64)
    return {"bins": [round(i / n, 6) for i in range(n + 1)],
            "counts": np.bincount(bins, minlength=n).tolist()}


def summary(values: np.ndarray) -> dict[str, Any]:
    """Mean, 10/50/90 % quantiles, count and histogram of the defined (non-NaN) values."""
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return {"mean": None, "p10": None, "p50": None, "p90": None, "count": 0,
                "histogram": histogram(defined)}
    p10, p50, p90 = np.percentile(defined, (10, 50, 90))
    return {"mean": _number(defined.mean()), "p10": _number(p10), "p50": _number(p50),
            "p90": _number(p90), "count": int(defined.size), "histogram": histogram(defined)}


class _Strings:
    """Append-only strings packed in one buffer (an item's id and URI without a Python object)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("q")

    def append(self, value: str | None) -> None:
        self._data += (value or "").encode()
        self._ends.append(len(self._data))

    def __getitem__(self, i: int) -> str | None:
        start = self._ends[i - 1] if i else 0
        return self._data[start:self._ends[i]].decode() or None


class ReportBuilder:
    """Streams result rows in; `build` returns the report. Rows may come in any order.

    A row is a mapping with `index`, `method` (None for a failed item, which has one row),
    `position` (the method's position in the job; defaults to the order methods first
    appear), and where known `id`, `uri`, `label`, `predicted`, `correct`, the metrics of
    `item_metrics` (`energy_in_box`, `pointing_hit`, `border_energy`, `concentration`) and
    those of the centre-Gaussian baseline for the same item (`baseline_energy_in_box`,
    `baseline_pointing_hit`, from `baseline_metrics`). Item-level figures are taken from
    each item's position-0 row. A row with a `rank` above 0 (a top-k target's lower classes)
    is left out: the report audits one map per item and method (top-k's rank 0 is the
    predicted class's). Other keys (a thumbnail, say) are ignored.
    """

    def __init__(self, *, input_size: int, class_names: Sequence[str] | None = None) -> None:
        self.input_size = input_size
        self.class_names = tuple(class_names) if class_names is not None else None
        self.methods: dict[int, str] = {}
        self._rows = {"index": array("q"), "position": array("h"), "predicted": array("l"),
                      "correct": array("b")}
        self._metrics = {name: array("f") for name in ROW_METRICS}
        self._items = array("q")
        self._ids, self._uris = _Strings(), _Strings()
        self.items = self.failed = self.labelled = self.correct = 0
        self._per_class: Counter[int] = Counter()
        self._per_class_correct: Counter[int] = Counter()
        self._confusions: Counter[tuple[int, int]] = Counter()

    def class_name(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    def _position(self, row: Mapping[str, Any]) -> int:
        method = row["method"]
        position = row.get("position")
        if position is None:
            known = {name: p for p, name in self.methods.items()}
            position = known.get(method, len(self.methods))
        position = int(position)
        if not 0 <= position < MAX_METHODS:
            raise ValueError(f"row position {position} is outside 0..{MAX_METHODS - 1}")
        self.methods.setdefault(position, method)
        return position

    def add(self, row: Mapping[str, Any]) -> None:
        """Take in one result row."""
        if row.get("rank"):
            return
        index = int(row["index"])
        if row.get("method") is None:
            self.items += 1
            self.failed += 1
            return
        position = self._position(row)
        label, predicted = row.get("label"), row.get("predicted")
        correct = row.get("correct")
        if correct is None and label is not None and predicted is not None:
            correct = int(label) == int(predicted)
        if position == 0:
            self._add_item(index, row, label, predicted, correct)
        self._rows["index"].append(index)
        self._rows["position"].append(position)
        self._rows["predicted"].append(-1 if predicted is None else int(predicted))
        self._rows["correct"].append(-1 if correct is None else int(bool(correct)))
        for name in ROW_METRICS:
            self._metrics[name].append(_metric(row, name))

    def _add_item(self, index: int, row: Mapping[str, Any], label: Any, predicted: Any,
                  correct: Any) -> None:
        self.items += 1
        self._items.append(index)
        self._ids.append(row.get("id"))
        self._uris.append(row.get("uri"))
        if label is None:
            return
        label = int(label)
        self.labelled += 1
        self._per_class[label] += 1
        if correct:
            self.correct += 1
            self._per_class_correct[label] += 1
        elif predicted is not None:
            self._confusions[(label, int(predicted))] += 1

    # --- building ------------------------------------------------------------------------

    def _arrays(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        rows = {name: np.array(col, dtype=np.dtype(col.typecode))
                for name, col in self._rows.items()}
        metrics = {name: np.array(col, dtype=np.float64) for name, col in self._metrics.items()}
        return rows, metrics

    def build(
        self,
        *,
        clusters: Mapping[tuple[int, int], Clustering] | None = None,
        input_dependence: Mapping[int, InputDependence] | None = None,
        sanity: SanityResult | None = None,
        overlay: Overlay | None = None,
    ) -> Report:
        """The report.

        `clusters` are keyed by (method position, predicted class), with item indices as the
        clustered maps' ids; `input_dependence` is keyed by method position; `overlay(index,
        position)` draws a suspect's picture (`pictures.suspect_overlay_png`), or suspects
        have no picture.
        """
        rows, metrics = self._arrays()
        terms, typical_border = self._terms(rows, metrics)
        pictures: dict[str, bytes] = {}
        join = _ClusterJoin(rows["index"].astype(np.int64) * MAX_METHODS + rows["position"])
        groups = [self._cluster_group(position, cls, clustering, join, metrics, terms, pictures)
                  for (position, cls), clustering in sorted((clusters or {}).items())]
        data = {
            "kind": "attribution",
            "counts": {"items": self.items, "succeeded": self.items - self.failed,
                       "failed": self.failed, "labelled": self.labelled,
                       "outputs": int(len(rows["index"]))},
            "accuracy": self._accuracy(),
            "confusions": self._confusion_list(),
            "methods": [self._method(p, rows["position"] == p, metrics)
                        for p in sorted(self.methods)],
            "suspects": self._suspects(rows, metrics, terms, typical_border, join, overlay,
                                       pictures),
            "suspect_threshold": SUSPECT_AT,
            "clusters": groups,
            "input_dependence": [
                {"method": self.methods.get(p), "position": p, **result.to_json()}
                for p, result in sorted((input_dependence or {}).items())
            ],
        }
        if sanity is not None:
            data["sanity"] = sanity.to_json()
        return Report(data, pictures)

    def _terms(self, rows: dict[str, np.ndarray], metrics: dict[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[int, float]]:
        """The suspect score's per-row terms (`atypical` is filled in by the clusters), and
        each method's median border_energy."""
        border = np.zeros(len(rows["index"]))
        typical: dict[int, float] = {}
        for position in self.methods:
            selected = rows["position"] == position
            values = metrics["border_energy"][selected]
            defined = values[~np.isnan(values)]
            typical[position] = float(np.median(defined)) if defined.size else 0.0
            border[selected] = border_excess(values, typical[position])
        terms = {"off_object": off_object(metrics["energy_in_box"], metrics["pointing_hit"]),
                 "border": border, "atypical": np.zeros(len(rows["index"]))}
        return terms, typical

    def _accuracy(self) -> dict[str, Any]:
        per_class = [
            {"class": c, "name": self.class_name(c), "items": n,
             "correct": self._per_class_correct[c],
             "accuracy": _number(self._per_class_correct[c] / n)}
            for c, n in sorted(self._per_class.items())
        ]
        overall = self.correct / self.labelled if self.labelled else None
        return {"overall": _number(overall), "per_class": per_class}

    def _confusion_list(self) -> list[dict[str, Any]]:
        top = sorted(self._confusions.items(), key=lambda kv: (-kv[1], kv[0]))[:CONFUSIONS]
        return [
            {"label": a, "label_name": self.class_name(a), "predicted": b,
             "predicted_name": self.class_name(b), "count": n,
             "share_of_label": _number(n / self._per_class[a])}
            for (a, b), n in top
        ]

    def _method(self, position: int, selected: np.ndarray,
                metrics: dict[str, np.ndarray]) -> dict[str, Any]:
        own = {name: summary(metrics[name][selected]) for name in SUMMARISED}
        # The baseline map is the same for every item: only its energy in the object varies;
        # its border share and concentration are constants of the input size.
        constant = baseline_metrics(None, self.input_size)
        outputs = int(selected.sum())
        baseline = {"energy_in_box": summary(metrics["baseline_energy_in_box"][selected])}
        baseline.update({name: summary(np.full(outputs, constant[name]))
                         for name in SUMMARISED[1:]})
        return {
            "method": self.methods[position], "position": position, "outputs": outputs,
            "metrics": own,
            "pointing_accuracy": rate(metrics["pointing_hit"][selected]),
            "baseline": {"metrics": baseline,
                         "pointing_accuracy": rate(metrics["baseline_pointing_hit"][selected])},
        }

    def _cluster_group(self, position: int, cls: int, clustering: Clustering,
                       join: _ClusterJoin, metrics: dict[str, np.ndarray],
                       terms: dict[str, np.ndarray], pictures: dict[str, bytes]
                       ) -> dict[str, Any]:
        """One class's clusters as JSON; sets its members' `atypical` term and cluster facts."""
        members = [np.asarray(c.members, dtype=np.int64) for c in clustering.clusters]
        rows = [join.rows(m, position) for m in members]
        everyone = np.concatenate(rows)
        labels = np.concatenate([np.full(len(r), c) for c, r in enumerate(rows)])
        value = terms["off_object"][everyone] + terms["border"][everyone]
        atypicality = cluster_atypicality(value, labels)
        entries = []
        for c, cluster in enumerate(clustering.clusters):
            found = rows[c]
            terms["atypical"][found] = atypicality[c]
            join.size[found], join.share[found], join.cls[found] = cluster.size, cluster.share, cls
            name = f"clusters/{position}-{cls}-{c}.png"
            pictures[name] = mean_map_png(cluster.mean_map)
            entries.append({
                "size": cluster.size, "share": _number(cluster.share), "mean_map": name,
                "atypicality": _number(atypicality[c]),
                "metrics": {**{m: summary(metrics[m][found])["mean"] for m in SUMMARISED},
                            "pointing_accuracy": rate(metrics["pointing_hit"][found])},
                "members": members[c].tolist(),
            })
        return {"class": cls, "class_name": self.class_name(cls),
                "method": self.methods.get(position), "position": position,
                "size": clustering.size, "sampled": clustering.sampled,
                "eigenvalues": [_number(v) for v in clustering.eigenvalues],
                "clusters": entries}

    def _suspects(self, rows: dict[str, np.ndarray], metrics: dict[str, np.ndarray],
                  terms: dict[str, np.ndarray], typical_border: dict[int, float],
                  join: _ClusterJoin, overlay: Overlay | None, pictures: dict[str, bytes]
                  ) -> list[dict[str, Any]]:
        """The top `SUSPECTS` items by the suspect score, each by its best output (those
        below `SUSPECT_AT` included: the report lists them, the page does not)."""
        if not len(rows["index"]):
            return []
        scores = suspect_scores(terms, rows["correct"])
        # Each item once, by its highest-scoring output; ties in index order.
        by_score = np.lexsort((rows["position"], rows["index"], -scores))
        _, first = np.unique(rows["index"][by_score], return_index=True)
        best = by_score[np.sort(first)][:SUSPECTS]
        items = np.array(self._items, dtype=np.int64)
        item_order = np.argsort(items, kind="stable")
        items_sorted = items[item_order]
        out = []
        for rank, r in enumerate(best.tolist()):
            index, position = int(rows["index"][r]), int(rows["position"][r])
            slot = int(np.searchsorted(items_sorted, index))
            found = slot < len(items_sorted) and items_sorted[slot] == index
            item = int(item_order[slot]) if found else None
            uri = self._uris[item] if item is not None else None
            row_terms = {name: float(t[r]) for name, t in terms.items()}
            correct = int(rows["correct"][r])
            entry = {
                "index": index,
                "id": self._ids[item] if item is not None else None,
                "input": {"uri": uri} if uri else {"item": index},
                "method": self.methods[position], "position": position,
                "score": _number(scores[r]),
                "terms": {name: _number(v) for name, v in row_terms.items()},
                "reasons": reasons(
                    row_terms, energy_in_box=float(metrics["energy_in_box"][r]),
                    border_energy=float(metrics["border_energy"][r]),
                    typical_border=typical_border[position],
                    cluster_size=int(join.size[r]), cluster_share=float(join.share[r]),
                    class_name=self.class_name(int(join.cls[r])), correct=correct,
                ),
                "predicted": int(rows["predicted"][r]) if rows["predicted"][r] >= 0 else None,
                "correct": None if correct < 0 else bool(correct),
                "metrics": {name: _number(metrics[name][r]) for name in METRICS},
                "overlay": None,
            }
            if overlay is not None:
                entry["overlay"] = f"suspects/{rank}.png"
                pictures[entry["overlay"]] = overlay(index, position)
            out.append(entry)
        return out


def rate(hits: np.ndarray) -> float | None:
    """The share of hits among the defined (non-NaN) values."""
    defined = hits[~np.isnan(hits)]
    return _number(defined.mean()) if defined.size else None


class _ClusterJoin:
    """Finds clustered items' rows by (index, position), and keeps each row's cluster."""

    def __init__(self, keys: np.ndarray) -> None:
        self._order = np.argsort(keys, kind="stable")
        self._sorted = keys[self._order]
        self.size = np.zeros(len(keys), dtype=np.int64)
        self.share = np.zeros(len(keys))
        self.cls = np.full(len(keys), -1, dtype=np.int64)

    def rows(self, members: np.ndarray, position: int) -> np.ndarray:
        """The rows of item indices `members` at `position` (members without a row are left out)."""
        wanted = members * MAX_METHODS + position
        at = np.searchsorted(self._sorted, wanted)
        found = at < len(self._sorted)
        found[found] = self._sorted[at[found]] == wanted[found]
        return self._order[at[found]]
