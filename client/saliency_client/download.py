"""Where `Job.download` puts each artifact: predictable names, one `results.jsonl`.

`{index:05d}_{method}_{target}.npy`, `… .png` and `…_overlay.png`, where target is
`class281`, or `layer4-ch3` for a feature-map target; when a job names one method twice (two
configurations), the second one's files are `{method}-2`, in the order of the job's methods.
A visualize item's output is named by its objective (`00000_visualize_class281.png`), with
`…_curve.json` and its snapshots `…_step0064.png`.
`results.jsonl` holds one item per line with a `files` map from artifact kind to file name.
A finished job's `results.parquet` and `report.json` are saved beside them.

A top_activations job's results are in its report: per channel its grid
`channel-0003.png`, and in `channel-0003/` each top unit's files by rank,
`00_deconvnet.png`, `00_deconvnet.npy` and `00_patch.png`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from saliency_client.kinds import TOP_ACTIVATIONS, VISUALIZE
from saliency_client.types import Item, Output

SUFFIXES = {
    "npy": ".npy", "png": ".png", "overlay": "_overlay.png", "signed": "_signed.png"
}
RESULTS = "results.jsonl"


def target_label(target: Any) -> str:
    """A file-name-safe label for a resolved target."""
    if isinstance(target, dict):
        if "class" in target:
            return f"class{target['class']}"
        if "layer" in target:
            label = f"{target['layer']}-ch{target.get('channel', 0)}"
            if target.get("position"):
                label += "-at" + "x".join(str(p) for p in target["position"])
            return re.sub(r"[^A-Za-z0-9_.-]", "_", label)
        if "topk" in target:
            return f"top{target['topk']}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(target or "predicted"))


def _snapshot(entry: Any) -> tuple[str | None, Any]:
    """A snapshot's URL and step, whether given as a URL or as `{"png", "step"}`."""
    if isinstance(entry, dict):
        return entry.get("png") or entry.get("url"), entry.get("step")
    return entry, None


def snapshot_steps(snapshots: tuple[Any, ...], job: dict[str, Any] | None) -> list[Any]:
    """The step of each snapshot: its own, or from the job's echo, where snapshot n (from 0)
    is the picture after (n + 1) · `snapshot_every` steps; None where neither says."""
    every = (job or {}).get("snapshot_every")
    steps = []
    for n, entry in enumerate(snapshots):
        step = _snapshot(entry)[1]
        if not isinstance(step, int) and isinstance(every, int) and every > 0:
            step = (n + 1) * every
        steps.append(step)
    return steps


def item_objective(job: dict[str, Any], index: int) -> Any:
    """A visualize item's objective from the job's echo: item i is a start of objective
    i // starts."""
    objective = job.get("objective")
    if isinstance(objective, list):
        k = index // max(1, int(job.get("starts") or 1))
        return objective[k] if k < len(objective) else None
    return objective


def output_files(item: Item, job: dict[str, Any] | None = None
                 ) -> list[tuple[Output, dict[str, Any]]]:
    """Each output of an item with its file name per artifact kind it has a URL for (and
    for `snapshots`, a list of names). An output without a target (a visualize item's) is
    named by the item's objective, else by the objective the `job` (its JSON) gives it."""
    plan = []
    seen: dict[str, int] = {}
    for out in item.outputs:
        target = out.target
        if target is None:
            target = item.raw.get("objective")
        if target is None and job is not None and job.get("kind") == VISUALIZE:
            target = item_objective(job, item.index)
        label = target_label(target)
        stem = f"{item.index:05d}_{out.method}_{label}"
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{item.index:05d}_{out.method}-{seen[stem]}_{label}"
        names: dict[str, Any] = {kind: stem + suffix for kind, suffix in SUFFIXES.items()
                                 if getattr(out, kind)}
        if isinstance(out.curve, str):
            names["curve"] = stem + "_curve.json"
        if out.snapshots:
            steps = snapshot_steps(out.snapshots, job)
            names["snapshots"] = [stem + (f"_step{step:04d}.png" if isinstance(step, int)
                                          else f"_snapshot{n:02d}.png")
                                  for n, step in enumerate(steps)]
        plan.append((out, names))
    return plan


def fetches(plan: list[tuple[Output, dict[str, Any]]]) -> list[tuple[str, str]]:
    """The (URL, file name) pairs to download for an item's plan."""
    pairs = []
    for out, names in plan:
        for kind, name in names.items():
            if kind == "snapshots":
                pairs.extend((_snapshot(entry)[0], snap)
                             for entry, snap in zip(out.snapshots, name, strict=True))
            else:
                pairs.append((getattr(out, kind), name))
    return [(url, name) for url, name in pairs if url]


def result_line(item: Item, plan: list[tuple[Output, dict[str, Any]]]) -> dict[str, Any]:
    """The `results.jsonl` record of an item: its JSON plus the local file names."""
    files = [{"method": out.method, "target": out.target, **names} for out, names in plan]
    return {**item.raw, "files": files}


def channel_stem(channel: int) -> str:
    return f"channel-{channel:04d}"


def report_files(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The (URL, file name) pairs of a top_activations report's pictures and arrays: each
    channel's grid, and each top unit's projections per method and its patch."""
    if report.get("kind") != TOP_ACTIVATIONS:
        return []
    pairs = []
    for channel in report.get("channels") or ():
        stem = channel_stem(int(channel["channel"]))
        pairs.append((channel.get("grid"), f"{stem}.png"))
        for rank, unit in enumerate(channel.get("top") or ()):
            for method, files in (unit.get("projections") or {}).items():
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", method)
                pairs.extend((files.get(kind), f"{stem}/{rank:02d}_{safe}.{kind}")
                             for kind in ("png", "npy"))
            pairs.append((unit.get("patch"), f"{stem}/{rank:02d}_patch.png"))
    return [(url, name) for url, name in pairs if url]


def write_json(path: Path, data: Any) -> Path:
    """Write `data` as JSON, whole or not at all (through a `.part` file)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path
