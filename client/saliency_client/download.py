"""Where `Job.download` puts each artifact: predictable names, one `results.jsonl`.

`{index:05d}_{method}_{target}.npy`, `… .png` and `…_overlay.png`, where target is
`class281`, or `layer4-ch3` for a feature-map target; when a job names one method twice (two
configurations), the second one's files are `{method}-2`, in the order of the job's methods.
`results.jsonl` holds one item per line with a `files` map from artifact kind to file name.
A finished job's `results.parquet` and `report.json` are saved beside them.
"""

from __future__ import annotations

import re
from typing import Any

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


def output_files(item: Item) -> list[tuple[Output, dict[str, str]]]:
    """Each output of an item with its file name per artifact kind it has a URL for."""
    plan = []
    seen: dict[str, int] = {}
    for out in item.outputs:
        stem = f"{item.index:05d}_{out.method}_{target_label(out.target)}"
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{item.index:05d}_{out.method}-{seen[stem]}_{target_label(out.target)}"
        names = {kind: stem + suffix for kind, suffix in SUFFIXES.items() if getattr(out, kind)}
        plan.append((out, names))
    return plan


def result_line(item: Item, plan: list[tuple[Output, dict[str, str]]]) -> dict[str, Any]:
    """The `results.jsonl` record of an item: its JSON plus the local file names."""
    files = [{"method": out.method, "target": out.target, **names} for out, names in plan]
    return {**item.raw, "files": files}
