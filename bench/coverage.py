"""The coverage table: the smallest architecture of every timm model module and a small model
of every Hugging Face model type the service takes, through every method and kind.

    .venv/bin/python -m bench.coverage --json bench/results/coverage.json \
        --record docs/models/coverage.json --docs docs/models.md
    .venv/bin/python -m bench.coverage --only convnext,vit --json bench/results/some.json
    .venv/bin/python -m bench.coverage --all --json bench/results/coverage-all.json
    .venv/bin/python -m bench.coverage --find        # re-record the smallest architectures

Subjects (`bench/coverage_models.json`): per timm module (`timm.list_modules()`), its
architecture with the fewest parameters among those that run at 224 px or less (any, when
none does), counted on the meta device by `--find`, which takes minutes and so is recorded
rather than repeated; and per transformers model type, a small configuration, saved with
`save_pretrained`, zipped and built as the service builds a registered bundle
(`worker.models.hugging_face.build_transformers`). `--all` takes every timm architecture instead.
Random weights (seeded), layer scales at 1 and zero weights drawn again (`live_weights`),
BatchNorm statistics from a seeded batch (`calibrate`), 10 classes, a batch of 2 seeded
N(0, 1) images at the architecture's default input size, capped at 224 px where the model
takes any size (halonet_h1 takes only multiples of 256: it runs at its own 256).

Cells (`bench/coverage_cells.py`): the attribution methods through `Engine.attribute`,
a `top_activations` scan and two `visualize` steps at the default Grad-CAM layer. Each is
  ok       it ran, and its output passed the checks against a silent fallback;
  refused  the service's own code raised an `InputError` with a message: the reason;
  error    anything else: another exception, an `InputError` raised outside the service's
           code or without a message, a cell past `--timeout`, or an output that failed a
           check (not finite; constant; guided backprop's rule not applied).
One process, one torch thread; a cell's timeout interrupts it between Python calls.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.coverage_cells import CELLS, run_cell

MODELS = Path(__file__).with_name("coverage_models.json")
NUM_CLASSES = 10
MAX_SIZE = 224
BATCH = 2
BEGIN, END = "<!-- coverage:begin -->", "<!-- coverage:end -->"
GRADIENT_FAMILY = ("gradient", "smoothgrad", "integrated_gradients", "occlusion")
TARGETED = (*GRADIENT_FAMILY, "gradcam", "guided_backprop")  # the ≥ 95 % ones


@dataclass(frozen=True)
class Subject:
    """One model of the table: timm's by architecture name, transformers' by its config."""

    family: str  # "timm" or "transformers"
    module: str  # timm's model module, or the transformers model type
    architecture: str
    size: int  # the input's side
    params: int | None = None
    config: dict | None = None  # transformers: config.json's settings

    @classmethod
    def of(cls, raw: dict) -> Subject:
        return cls(raw["family"], raw["module"], raw["architecture"], raw["size"],
                   raw.get("params"), raw.get("config"))


def run_size(input_size: tuple[int, ...], fixed: bool) -> int:
    """The side to run an architecture at: its default, capped where it takes any size."""
    side = int(input_size[-1])
    return side if fixed else min(side, MAX_SIZE)


def timm_candidates(names: list[str]) -> list[dict]:
    """Each timm architecture's module, parameter count (on the meta device, so nothing is
    allocated; None if it cannot be built there), default input size and whether it is fixed."""
    import timm
    from timm.models import get_pretrained_cfg

    module_of = {name: module for module in timm.list_modules()
                 for name in timm.list_models(module=module)}
    found = []
    for name in names:
        cfg = get_pretrained_cfg(name)
        fixed = bool(cfg.fixed_input_size) if cfg else False
        size = run_size(cfg.input_size if cfg else (MAX_SIZE,), fixed)
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params = sum(p.numel() for p in timm.create_model(name).parameters())
        except Exception:  # noqa: BLE001 — recorded as unknown; --all still runs it
            params = None
        found.append({"family": "timm", "module": module_of[name], "architecture": name,
                      "size": size, "params": params})
    return found


def find_smallest() -> list[dict]:
    """Per timm module, the architecture with the fewest parameters among those that run at
    224 px or less (among all, when none does)."""
    import timm

    by_module: dict[str, list[dict]] = {}
    for found in timm_candidates(timm.list_models()):
        if found["params"] is not None:
            by_module.setdefault(found["module"], []).append(found)
        print(f"{found['architecture']}: {found['params']}", flush=True)
    chosen = []
    for module in timm.list_modules():
        candidates = by_module.get(module, [])
        small = [c for c in candidates if c["size"] <= MAX_SIZE] or candidates
        if small:
            chosen.append(min(small, key=lambda c: (c["params"], c["architecture"])))
    return chosen


def subjects(args: argparse.Namespace) -> list[Subject]:
    recorded = json.loads(MODELS.read_text(encoding="utf-8"))
    raws = recorded["timm"] + recorded["transformers"]
    if args.all:
        import timm

        raws = timm_candidates(timm.list_models()) + recorded["transformers"]
    found = [Subject.of(raw) for raw in raws]
    if args.only:
        wanted = set(args.only.split(","))
        found = [s for s in found if s.module in wanted or s.architecture in wanted]
    return found


def build(subject: Subject) -> nn.Module:
    """The subject's classifier, built as the service builds a registered model."""
    torch.manual_seed(0)
    if subject.family == "timm":
        from worker.models.build import build_architecture

        return build_architecture(f"timm:{subject.architecture}", NUM_CLASSES)
    from transformers import CONFIG_MAPPING, AutoModelForImageClassification

    from shared.settings import Settings
    from worker.models.hugging_face import build_transformers

    config = CONFIG_MAPPING[subject.module](num_labels=NUM_CLASSES, **subject.config)
    model = AutoModelForImageClassification.from_config(config)
    for module in model.modules():  # transformers draws BatchNorm scales near 0 (std 0.02):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):  # in a deep CNN the
            nn.init.ones_(module.weight)  # activations then vanish to exactly 0
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        bundle = Path(folder) / "bundle.zip"
        with zipfile.ZipFile(bundle, "w") as z:
            for name in ("config.json", "model.safetensors"):
                z.write(Path(folder) / name, name)
        return build_transformers(bundle, Settings().max_model_bytes)


def calibrate(model: nn.Module, size: int) -> None:
    """BatchNorm's running statistics from a seeded batch of 4 (a cumulative average). At
    random initialisation the statistics are mean 0 and variance 1, with which the
    activations of some deep CNNs vanish in eval mode (cspnext_tiny's logits are the same
    for every input), so that no method could show anything; real weights come with real
    statistics."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2)))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def live_weights(model: nn.Module) -> None:
    """Layer scales at 1, and weights of all zeros drawn again (seeded, std 0.02): a
    parameter whose entries all hold one value in (0, 1e-4] is a layer scale (timm's and
    transformers' LayerScale, ConvNeXt's gamma, BEiT's lambdas start at 1e-5 or 1e-6 for
    training from scratch), at which a residual branch adds almost nothing, so that
    attention Grad-CAM's relevance is the identity to float32's precision; a linear or
    convolution weight of all zeros (timm's MLP-Mixer and gMLP heads) makes the logits
    constant. Trained weights are neither."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if p.numel() == 0:
                    continue
                first = p.flatten()[0]
                if 0 < float(first) <= 1e-4 and bool((p == first).all()):
                    p.fill_(1.0)
                elif (name == "weight" and isinstance(module, (nn.Linear, nn.Conv2d))
                      and not p.any()):
                    p.copy_(0.02 * torch.randn(p.shape, generator=generator))


def run_subject(subject: Subject, timeout: float) -> dict:
    """The subject's row: how it was built, and each cell."""
    from bench.coverage_cells import Cell, classify
    from worker.engine.core import Engine

    row = {"family": subject.family, "module": subject.module,
           "architecture": subject.architecture, "size": subject.size,
           "params": subject.params}
    started = time.perf_counter()
    try:
        model = build(subject)
        live_weights(model)
        calibrate(model, subject.size)
        engine = Engine(model, memory_budget_mb=2048)
    except Exception as exc:  # noqa: BLE001 — the row records it; the table goes on
        failed = Cell(*classify(exc), time.perf_counter() - started)
        row["build"] = failed.to_json()
        row["cells"] = {name: failed.to_json() for name in CELLS}
        return row
    row["build"] = {"status": "ok", "seconds": round(time.perf_counter() - started, 2)}
    x = torch.randn(BATCH, 3, subject.size, subject.size,
                    generator=torch.Generator().manual_seed(1))
    row["cells"] = {}
    context: dict = {}
    for name in CELLS:
        row["cells"][name] = run_cell(name, engine, x, context, timeout).to_json()
    return row


def reason_group(reason: str) -> str:
    """A refusal's reason with the model's particulars (names, counts, shapes) left out, so
    that the same reason on several models is one group."""
    reason = re.sub(r"'[^']*'", "'…'", reason)
    reason = re.sub(r"\[[^\]]*\]", "[…]", reason)
    return re.sub(r"\d+", "N", reason)


def summary(rows: list[dict]) -> dict:
    """Per cell, the count of each status and the ok share of the timm modules; the refusals
    grouped by reason, with the subjects refused for each."""
    per_cell = {}
    timm_rows = [r for r in rows if r["family"] == "timm"]
    for name in CELLS:
        counts = Counter(r["cells"][name]["status"] for r in rows)
        ok_timm = sum(r["cells"][name]["status"] == "ok" for r in timm_rows)
        per_cell[name] = {"ok": counts["ok"], "refused": counts["refused"],
                          "error": counts["error"],
                          "ok_share_of_timm_modules": round(ok_timm / len(timm_rows), 4)
                          if timm_rows else None}
    refusals: dict[str, dict] = {}
    for r in rows:
        for name, cell in r["cells"].items():
            if cell["status"] == "refused":
                group = refusals.setdefault(reason_group(cell["reason"]),
                                            {"example": cell["reason"], "cells": Counter(),
                                             "subjects": []})
                group["cells"][name] += 1
                if r["architecture"] not in group["subjects"]:
                    group["subjects"].append(r["architecture"])
    return {"cells": per_cell, "refusals": [
        {"reason": reason, "example": g["example"], "cells": dict(g["cells"]),
         "subjects": g["subjects"]}
        for reason, g in sorted(refusals.items(), key=lambda kv: -sum(kv[1]["cells"].values()))
    ]}


MARK = {"ok": "✓", "refused": "—", "error": "✗"}


def markdown(result: dict) -> str:
    """The generated section of docs/models.md: settings, the totals per cell, the refusals
    by reason, and the table."""
    rows, totals = result["rows"], result["summary"]
    lines = [
        BEGIN,
        "<!-- generated by bench/coverage.py; edits between these markers are overwritten -->",
        "",
        f"{len(rows)} models ({sum(r['family'] == 'timm' for r in rows)} timm modules, "
        f"{sum(r['family'] == 'transformers' for r in rows)} transformers model types), "
        f"{result['settings']['batch']} images each, random weights; "
        f"{result['settings']['machine']}, torch {result['settings']['torch']}, "
        f"timm {result['settings']['timm']}, transformers {result['settings']['transformers']}, "
        f"one torch thread, {result['settings']['timeout_s']:.0f} s per cell at most. "
        f"`✓` ok, `—` refused (the reason below), `✗` error.",
        "",
        "| cell | ok | refused | error | ok, timm modules |",
        "|---|---|---|---|---|",
    ]
    for name, c in totals["cells"].items():
        share = c["ok_share_of_timm_modules"]
        lines.append(f"| `{name}` | {c['ok']} | {c['refused']} | {c['error']} | "
                     f"{'-' if share is None else f'{share:.0%}'} |")
    lines += ["", "**Refusals, by reason** (one example message; the subjects refused):", ""]
    lines += ["| reason | cells | models |", "|---|---|---|"]
    for group in totals["refusals"]:
        cells = ", ".join(f"`{k}` {v}" for k, v in group["cells"].items())
        models = ", ".join(group["subjects"][:6]) + (
            f", … ({len(group['subjects'])})" if len(group["subjects"]) > 6 else "")
        lines.append(f"| {group['example'].replace('|', '/')} | {cells} | {models} |")
    errors = [(r["architecture"], name, cell["reason"]) for r in rows
              for name, cell in r["cells"].items() if cell["status"] == "error"]
    if errors:
        lines += ["", "**Errors:**", ""]
        lines += [f"- `{arch}` `{name}`: {reason}" for arch, name, reason in errors]
    not_run = result.get("not_run", [])
    if not_run:
        lines += ["", f"**Not run** ({len(not_run)}, the largest, past `--stop-after`): "
                  + ", ".join(f"`{n['architecture']}`" for n in not_run)]
    header = "| module | architecture | px | " + " | ".join(
        f"`{name}`" for name in CELLS) + " |"
    lines += ["", header, "|" + "---|" * (3 + len(CELLS))]
    for r in sorted(rows, key=lambda r: (r["family"], r["module"])):
        marks = " | ".join(MARK[r["cells"][name]["status"]] for name in CELLS)
        family = "" if r["family"] == "timm" else " (transformers)"
        lines.append(f"| {r['module']}{family} | `{r['architecture']}` | {r['size']} | "
                     f"{marks} |")
    lines += ["", END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in `path` with `section`."""
    text = path.read_text(encoding="utf-8")
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{path} has no {BEGIN} … {END} section to replace")
    path.write_text(text[:begin] + section + text[end + len(END):], encoding="utf-8")


def settings(timeout: float) -> dict:
    import timm
    import transformers

    return {"machine": f"{platform.machine()} CPU, {platform.system()}",
            "torch": torch.__version__, "timm": timm.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads(),
            "batch": BATCH, "num_classes": NUM_CLASSES, "max_size": MAX_SIZE,
            "timeout_s": timeout}


def write_result(args: argparse.Namespace, chosen: list[Subject], rows: list[dict]) -> dict:
    """The rows so far, their summary and the subjects not run, written to --json and
    --record."""
    ran = {r["architecture"] for r in rows}
    result = {"settings": settings(args.timeout), "rows": rows, "summary": summary(rows),
              "not_run": [{"module": s.module, "architecture": s.architecture,
                           "params": s.params} for s in chosen if s.architecture not in ran]}
    for path in (args.json_path, args.record):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true",
                        help="every timm architecture, not each module's smallest")
    parser.add_argument("--only", default=None,
                        help="comma-separated modules, model types or architectures")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
    parser.add_argument("--json", dest="json_path", type=Path, default=None,
                        help="write the rows and summary here (after every model)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --json that have no error; run the others")
    parser.add_argument("--stop-after", type=float, default=None,
                        help="start no model after this many seconds (models run smallest "
                             "first; those not run are listed as such)")
    parser.add_argument("--record", type=Path, default=None,
                        help="also write the JSON here (the committed copy)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="replace the generated section of this Markdown file")
    parser.add_argument("--find", action="store_true",
                        help=f"find each module's smallest architecture and write {MODELS.name}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.find:
        recorded = json.loads(MODELS.read_text(encoding="utf-8"))
        recorded["timm"] = find_smallest()
        MODELS.write_text(json.dumps(recorded, indent=1) + "\n", encoding="utf-8")
        return 0
    done: dict[str, dict] = {}
    if args.resume and args.json_path and args.json_path.exists():
        done = {r["architecture"]: r for r in json.loads(args.json_path.read_text())["rows"]
                if all(c["status"] != "error" for c in r["cells"].values())}
    rows: list[dict] = []
    chosen = subjects(args)
    begun = time.perf_counter()
    for subject in sorted(chosen, key=lambda s: s.params or 0):  # smallest first
        started = time.perf_counter()
        if (subject.architecture not in done and args.stop_after is not None
                and started - begun > args.stop_after):
            continue
        row = done.get(subject.architecture) or run_subject(subject, args.timeout)
        rows.append(row)
        print(f"{subject.module:<28} {subject.architecture:<36} "
              f"{time.perf_counter() - started:6.0f} s  "
              + " ".join(f"{name}:{cell['status']}" for name, cell in row["cells"].items()),
              flush=True)
        write_result(args, chosen, rows)
    result = write_result(args, chosen, rows)
    if args.docs is not None and result:
        write_section(args.docs, markdown(result))
    for name, c in result.get("summary", {}).get("cells", {}).items():
        print(f"{name:<22} ok {c['ok']:>4}  refused {c['refused']:>4}  error {c['error']:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
