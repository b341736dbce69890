"""What a job found, as lines for the terminal: its outputs' warnings, and an attribution
report's findings: the warnings, the top suspects with their reasons, the strategy clusters
per class, and the verdicts of the two trust checks (the sanity check and input dependence).

Pure functions on the items and the report's JSON (`docs/audits.md`), shared by `saliency
submit`, `audit` and `report`; the job and report pages draw the same with pictures.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from saliency_client.types import Item

SUSPECTS_SHOWN = 10
ITEMS_SHOWN = 10  # item indices quoted per warning
TERMS = ("off_object", "border", "atypical")


def output_warnings(items: Iterable[Item]) -> list[str]:
    """Each distinct warning of the items' outputs, once, with the method and items it is on:
    `warning: deconvnet on items 0, 1: deconvnet: this model's backward path ...`."""
    found: dict[tuple[str, str], list[int]] = {}
    for item in items:
        for out in item.outputs:
            for warning in out.warnings:
                indices = found.setdefault((out.method, warning), [])
                if not indices or indices[-1] != item.index:
                    indices.append(item.index)
    lines = []
    for (method, warning), indices in found.items():
        where = ", ".join(map(str, indices[:ITEMS_SHOWN]))
        if len(indices) > ITEMS_SHOWN:
            where += f" and {len(indices) - ITEMS_SHOWN} more"
        lines.append(f"warning: {method} on item{'s' if len(indices) > 1 else ''} {where}: "
                     f"{warning}")
    return lines


def _fixed(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def item_name(entry: dict[str, Any]) -> str:
    """An item as a reader knows it: `item 3 (cats/003.png)`, its id when that is not a
    URI, else the last folder and file name of its URI."""
    index = entry.get("index")
    name = entry.get("id") or (entry.get("input") or {}).get("uri")
    if name and "://" in name:
        path = unquote(urlsplit(name).path).rstrip("/")
        name = posixpath.join(posixpath.basename(posixpath.dirname(path)),
                              posixpath.basename(path)).lstrip("/")
    return f"item {index}" + (f" ({name})" if name else "")


def _class(name: Any, index: Any) -> str:
    return f"class {index}" if name is None or str(name) == str(index) else f"{name} ({index})"


def report_warnings(report: dict[str, Any]) -> list[str]:
    """The report's warnings: each method's input-dependence warning."""
    return [d["warning"] for d in report.get("input_dependence") or () if d.get("warning")]


def warning_lines(report: dict[str, Any]) -> list[str]:
    found = report_warnings(report)
    return [f"warnings: {len(found) or 'none'}", *(f"  {w}" for w in found)]


def _reasons(suspect: dict[str, Any]) -> str:
    """The report's reasons in words; below every reason's threshold, the score's terms."""
    if suspect.get("reasons"):
        return "; ".join(suspect["reasons"])
    terms = suspect.get("terms") or {}
    return "no strong reason: " + ", ".join(f"{t} {_fixed(terms.get(t))}" for t in TERMS)


def suspect_lines(report: dict[str, Any], shown: int = SUSPECTS_SHOWN) -> list[str]:
    """The `shown` highest-scoring suspects, each with its score, item, method and reasons."""
    suspects = report.get("suspects") or []
    if not suspects:
        return ["suspects: none"]
    top = suspects[:max(shown, 0)]
    head = f"suspects: {len(suspects)} in the report"
    if len(top) < len(suspects):
        head += f", the {len(top)} highest scores shown (--suspects N for more)"
    return [head + ":", *(f"  {_fixed(s.get('score'))}  {item_name(s)}  {s.get('method')}: "
                          f"{_reasons(s)}" for s in top)]


def cluster_lines(report: dict[str, Any]) -> list[str]:
    """Per method and predicted class, its strategy clusters: size, share, whether atypical."""
    groups = report.get("clusters") or []
    if not groups:
        return ["clusters: none (no predicted class has enough items to cluster)"]
    lines = ["clusters (decision strategies per predicted class, SpRAy):"]
    for group in groups:
        clusters = group.get("clusters") or []
        lines.append(f"  {_class(group.get('class_name'), group.get('class'))}, "
                     f"{group.get('method')}: {group.get('size')} maps in {len(clusters)} "
                     f"cluster{'s' if len(clusters) != 1 else ''}")
        for k, c in enumerate(clusters):
            metrics = c.get("metrics") or {}
            atypical = c.get("atypicality") or 0
            lines.append(
                f"    cluster {k}: {c.get('size')} maps ({_percent(c.get('share'))}), "
                + (f"atypical {atypical:.2f}" if atypical > 0 else "typical")
                + f"; in box {_fixed(metrics.get('energy_in_box'))}, border "
                f"{_fixed(metrics.get('border_energy'))}, pointing "
                f"{_percent(metrics.get('pointing_accuracy'))}")
    return lines


def sanity_lines(report: dict[str, Any]) -> list[str]:
    """Each method's sanity verdict: do its maps change once the model's weights are
    randomised, block by block from the class scores?"""
    sanity = report.get("sanity")
    if not sanity:
        return ["sanity check: not asked for (--sanity N runs it on N items)"]
    blocks, sample = sanity.get("blocks") or [], sanity.get("sample")
    lines = [f"sanity check (the model's {len(blocks)} blocks randomised from the class "
             f"scores down, on {sample} item{'' if sample == 1 else 's'}):"]
    lines += [f"  {m.get('method')}: {m.get('verdict')}: {m.get('text')}"
              for m in sanity.get("methods") or ()]
    return lines


def dependence_lines(report: dict[str, Any]) -> list[str]:
    """Each method's input-dependence verdict: are maps of different images different?"""
    entries = report.get("input_dependence") or []
    if not entries:
        return ["input dependence: not measured (fewer than two maps per method)"]
    lines = ["input dependence (median cosine between the maps of different images):"]
    for d in entries:
        scope = "the same class" if d.get("scope") == "same_class" else "any classes"
        if d.get("median_cosine") is None:
            verdict = "not measured (fewer than two maps that are not all zero)"
        else:
            verdict = (f"{d['median_cosine']:.3f} over {d.get('pairs')} pairs of {scope}: "
                       + ("barely depends on the input (see the warning)" if d.get("warning")
                          else "depends on the input"))
        lines.append(f"  {d.get('method')}: {verdict}")
    return lines


def lines(report: dict[str, Any], suspects: int = SUSPECTS_SHOWN) -> list[str]:
    """Every finding of an attribution report, in reading order; [] for another kind."""
    if report.get("kind") != "attribution":
        return []
    return [*warning_lines(report), *suspect_lines(report, suspects), *cluster_lines(report),
            *sanity_lines(report), *dependence_lines(report)]
