"""The audit's costs, side by side in one run: clustering against class size, metrics against
attribution, the sanity check, input dependence on the example photos, and the report builder.

    .venv/bin/python -m bench.audit --json bench-audit.json
    .venv/bin/python -m bench.audit --sections clustering --sizes 1000,10000,100000

Sections (`--sections`, comma-separated; all by default):
  clustering   `spray_clusters` on synthetic 32×32 relevance maps of planted strategies, one
               class of 1,000 / 10,000 / 100,000 maps: seconds, the ratio to the next smaller
               size (the bound: 100,000 maps at most 30× the time of 10,000), peak RSS growth,
               and the adjusted Rand index against the planted strategies.
  per_item     on the same images, the engine's attribution per image (one method) against
               what the audit adds per output: `item_metrics`, `baseline_metrics` (once per
               item, counted in full), `thumbnail`, and clustering at 10,000 maps a class
               amortised per map; the share of attribution time (target ≤ 10 %). Models:
               resnet18 with seeded weights at 64 px (the data-set benchmark's) and the built-in
               EfficientNet-Lite0 at 224 px.
  sanity       `sanity_check` on the built-in EfficientNet-Lite0 (`--sanity-sample` example
               photos, mirrored and cropped) and on resnet18 with seeded weights: its seconds, as
               a multiple of one attribution of the sample, and every curve and verdict.
  dependence   EfficientNet-Lite0 on the three example photos (cat, espresso, rocket): the
               median cosine between different photos' maps per method, and the structural
               probe (`probe_structure`).
  report       `ReportBuilder` fed `--report-rows` synthetic rows: seconds, and the growth of
               the resident set while holding them and at the peak of `build()`.
Timings are medians of `--repeats` interleaved runs on `--threads` torch threads (default 1:
on shared cores a second thread can stall small models).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shared.examples import EXAMPLES
from shared.spec.model import ModelSpec, Preprocessing, parse_model_spec
from worker.engine.core import Engine
from worker.kinds.attribution.audit import (
    ReportBuilder,
    baseline_metrics,
    box_to_input,
    input_dependence,
    item_metrics,
    probe_structure,
    sanity_check,
    spray_clusters,
    thumbnail,
)
from worker.models.build import build_architecture, build_model, preprocess_image

# The report first: its memory growth is measured against a fresh process.
SECTIONS = ("report", "clustering", "per_item", "sanity", "dependence")
METHODS = ("gradient", "guided_backprop", "deconvnet")
CLUSTER_REFERENCE = 10_000  # the class size whose clustering cost is amortised per map


def median_time(run: Callable[..., Any], repeats: int, *args: Any, **kwargs: Any
                ) -> tuple[float, Any]:
    """The median seconds of `repeats` calls of run(*args, **kwargs), and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run(*args, **kwargs)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def peak_rss_mb() -> float:
    """The process's largest resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """The process's resident set size now (Linux: /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


# --- clustering --------------------------------------------------------------------------------

def planted_maps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n relevance thumbnails of five strategies (a blob at one of five places) plus noise."""
    rng = np.random.default_rng(seed)
    places = np.array([(16, 16), (4, 4), (26, 8), (8, 26), (28, 28)], dtype=np.float64)
    strategy = rng.choice(5, size=n, p=[0.6, 0.2, 0.1, 0.06, 0.04])
    centre = places[strategy] + rng.normal(0, 1.0, (n, 2))
    yy, xx = np.mgrid[:32, :32]
    maps = np.empty((n, 32, 32), np.float32)
    for start in range(0, n, 10_000):  # in blocks: 100,000 maps at once would be 800 MB
        c = centre[start:start + 10_000]
        d2 = (yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2
        maps[start:start + len(c)] = np.exp(-d2 / 18.0) + rng.gamma(1.0, 0.03, d2.shape)
    return maps, strategy


def bench_clustering(args: argparse.Namespace) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    rows = []
    previous = None
    before = rss_mb()
    for n in (int(s) for s in args.sizes.split(",")):
        maps, truth = planted_maps(n, seed=n)
        seconds, result = median_time(spray_clusters, args.repeats if n < 100_000 else 1,
                                      maps, np.arange(n), seed=0)
        rows.append({
            "maps": n, "seconds": round(seconds, 3),
            "ratio_to_previous": round(seconds / previous[1], 2) if previous else None,
            "size_ratio_to_previous": n / previous[0] if previous else None,
            "clusters": len(result.clusters),
            "adjusted_rand_index": round(adjusted_rand_score(truth, result.labels), 3),
            "peak_rss_growth_mb": round(peak_rss_mb() - before, 0),
        })
        previous = (n, seconds)
        print(f"  {n:>7} maps: {seconds:7.2f} s  x{rows[-1]['ratio_to_previous'] or 1:>6}  "
              f"{len(result.clusters)} clusters  ARI {rows[-1]['adjusted_rand_index']:.3f}  "
              f"peak RSS +{rows[-1]['peak_rss_growth_mb']:.0f} MB", flush=True)
    return rows


# --- per-item cost -----------------------------------------------------------------------------

def efficientnet() -> tuple[torch.nn.Module, ModelSpec]:
    """The built-in model, converted once into the service's cache ($SALIENCY_DATA_DIR)."""
    from worker.models.builtin import EFFICIENTNET_LITE0_SPEC, efficientnet_lite0_artifact

    spec = parse_model_spec(EFFICIENTNET_LITE0_SPEC)
    return build_model(spec, efficientnet_lite0_artifact()).eval(), spec


def seeded_resnet18(side: int) -> tuple[torch.nn.Module, ModelSpec]:
    torch.manual_seed(0)
    spec = ModelSpec(name="resnet18-seeded", num_classes=10, architecture="resnet18",
                     preprocessing=Preprocessing(input_size=side, resize=side))
    return build_architecture("resnet18", 10).eval(), spec


def photos(spec: ModelSpec, count: int) -> torch.Tensor:
    """`count` inputs from the example photos: each as is, mirrored, and cropped corners."""
    pictures = [Image.open(e.path).convert("RGB") for e in EXAMPLES.values()]
    variants = []
    for picture in pictures:
        w, h = picture.size
        variants += [picture, picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                     picture.crop((0, 0, w * 3 // 4, h * 3 // 4)),
                     picture.crop((w // 4, h // 4, w, h)),
                     picture.crop((w // 8, 0, w, h * 7 // 8))]
    ordered = variants[::5] + [v for i, v in enumerate(variants) if i % 5]
    chosen = [ordered[i % len(ordered)] for i in range(count)]
    return torch.stack([preprocess_image(p, spec.preprocessing) for p in chosen])


def audit_outputs(values: list[np.ndarray], region: Any, side: int) -> None:
    """What the worker adds per output: the metrics, the baseline's and the thumbnail."""
    for v in values:
        item_metrics(v, region, side)
        baseline_metrics(region, side)
        thumbnail(v)


def per_item_one(name: str, model: torch.nn.Module, spec: ModelSpec, args: argparse.Namespace,
                 per_map: float | None) -> dict:
    x = photos(spec, args.batch)
    side = spec.preprocessing.input_size
    engine = Engine(model)
    seconds, result = median_time(engine.attribute, args.repeats, x, methods=("gradient",))
    attribution = seconds / len(x)
    values = [image.maps[0].values for image in result.images]
    region = box_to_input([side // 4, side // 4, 3 * side // 4, 3 * side // 4], (side, side),
                          spec.preprocessing)
    added = median_time(audit_outputs, args.repeats, values, region, side)[0] / len(x)
    total = added + (per_map or 0.0)
    return {
        "model": name, "batch": len(x),
        "attribution_ms_per_image": round(attribution * 1e3, 3),
        "metrics_ms_per_output": round(added * 1e3, 3),
        "clustering_ms_per_map": round(per_map * 1e3, 3) if per_map else None,
        "share_of_attribution": round(total / attribution, 4),
        "meets_target": total / attribution <= 0.10,
    }


def bench_per_item(args: argparse.Namespace, clustering: list[dict]) -> list[dict]:
    reference = [r for r in clustering if r["maps"] == CLUSTER_REFERENCE]
    per_map = reference[0]["seconds"] / CLUSTER_REFERENCE if reference else None
    rows = []
    for name, (model, spec) in (("resnet18@64", seeded_resnet18(64)),
                                ("efficientnet_lite0@224", efficientnet())):
        r = per_item_one(name, model, spec, args, per_map)
        rows.append(r)
        print(f"  {name:<24} attribution {r['attribution_ms_per_image']:8.2f} ms/image  "
              f"metrics {r['metrics_ms_per_output']:6.2f} ms  clustering "
              f"{r['clustering_ms_per_map'] or 0:6.3f} ms  share "
              f"{r['share_of_attribution']:.1%} {'ok' if r['meets_target'] else 'MISS'}",
              flush=True)
    return rows


# --- sanity check ------------------------------------------------------------------------------

def bench_sanity(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name, (model, spec), count in (
        ("efficientnet_lite0@224", efficientnet(), args.sanity_sample),
        ("resnet18@64", seeded_resnet18(64), 4),
    ):
        x = photos(spec, count)
        one = median_time(Engine(model).attribute, 1, x, methods=METHODS)[0]
        started = time.perf_counter()
        result = sanity_check(model, x, METHODS, seed=0)
        seconds = time.perf_counter() - started
        rows.append({"model": name, "sample": count, "seconds": round(seconds, 1),
                     "times_one_attribution": round(seconds / one, 1), **result.to_json()})
        print(f"  {name}: {seconds:.0f} s for {count} images ({seconds / one:.0f}× one "
              f"attribution of the sample); blocks {', '.join(result.blocks)}", flush=True)
        for method in METHODS:
            curve = " ".join(f"{v:.2f}" for v in result.spearman[method])
            ssim = " ".join(f"{v:.2f}" for v in result.ssim[method])
            print(f"    {method:<16} spearman {curve}\n    {'':<16} ssim     {ssim}\n"
                  f"    {'':<16} {result.verdicts[method].status}: "
                  f"{result.verdicts[method].text}", flush=True)
    return rows


# --- input dependence --------------------------------------------------------------------------

def bench_dependence(args: argparse.Namespace) -> list[dict]:
    model, spec = efficientnet()
    pictures = [Image.open(e.path).convert("RGB") for e in EXAMPLES.values()]
    x = torch.stack([preprocess_image(p, spec.preprocessing) for p in pictures])
    engine = Engine(model)
    result = engine.attribute(x, methods=METHODS)
    rows = []
    for m, method in enumerate(METHODS):
        maps = [image.maps[m].values for image in result.images]
        classes = [image.predicted_class for image in result.images]
        measured = input_dependence(maps, classes, method)
        structural = probe_structure(engine, method, spec.preprocessing.input_size)
        rows.append({"method": method, "photos": [e.name for e in EXAMPLES.values()],
                     "predicted": classes, **measured.to_json(),
                     "structural_warning": structural})
        print(f"  {method:<16} median cosine {measured.median_cosine:.3f} over "
              f"{measured.pairs} pairs ({measured.scope}); structural: "
              f"{'yes' if structural else 'no'}", flush=True)
    return rows


# --- report builder ----------------------------------------------------------------------------

def bench_report(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    n = args.report_rows
    energy = rng.random(n)
    builder = ReportBuilder(input_size=224)
    before = rss_mb()
    started = time.perf_counter()
    for i in range(n):
        builder.add({"index": i, "id": f"images/{i:08d}.jpg", "uri": f"s3://bucket/{i:08d}.jpg",
                     "label": i % 1000, "predicted": (i * 7) % 1000, "method": "gradient",
                     "position": 0, "energy_in_box": float(energy[i]),
                     "pointing_hit": bool(energy[i] > 0.4), "border_energy": 0.2,
                     "concentration": 0.5, "baseline_energy_in_box": 0.3,
                     "baseline_pointing_hit": True})
    added = time.perf_counter() - started
    held = rss_mb() - before
    report = builder.build()
    seconds = time.perf_counter() - started
    row = {"rows": n, "add_seconds": round(added, 1), "total_seconds": round(seconds, 1),
           "rss_growth_mb_after_rows": round(held, 1),
           "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
           "suspects": len(report.data["suspects"])}
    print(f"  {n} rows: {added:.1f} s to add, {seconds:.1f} s with build(); RSS +{held:.0f} MB "
          f"holding them ({held * 2**20 / n:.0f} B/row), peak +{row['peak_rss_growth_mb']:.0f} MB",
          flush=True)
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--sizes", default="1000,10000,100000", help="maps per class")
    parser.add_argument("--batch", type=int, default=16, help="images for the per-item costs")
    parser.add_argument("--sanity-sample", type=int, default=16)
    parser.add_argument("--report-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    out: dict[str, Any] = {"threads": args.threads}
    runners = {
        "clustering": lambda: bench_clustering(args),
        "per_item": lambda: bench_per_item(args, out.get("clustering", [])),
        "sanity": lambda: bench_sanity(args),
        "dependence": lambda: bench_dependence(args),
        "report": lambda: bench_report(args),
    }
    for section in SECTIONS:
        if section not in sections:
            continue
        print(f"# {section}", flush=True)
        out[section] = runners[section]()
        if args.json_path:  # written as we go, so a long run that is cut short keeps figures
            Path(args.json_path).write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
