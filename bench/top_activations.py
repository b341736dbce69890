"""Top-k figure throughput: the scan against a plain forward pass, the projections against
the engine's own DeconvNet, side by side in one run.

    .venv/bin/python -m bench.top_activations --models resnet50 --batches 16 --repeats 5 \
        --device cpu --json bench-top-activations.json

Contenders, per model and batch, on the same seeded input:
  forward      the model's forward pass alone, on a frozen eval-mode copy without hooks,
               under `torch.inference_mode`, logits copied to the host: the least a scan
               can cost;
  scan         `scan_batch` of every channel of the layer into a running top-k of 9 (the
               forward pass, the layer's maxima and positions, and the top-k merge);
  engine       `Engine.attribute` with `deconvnet` and one layer-position target per unit,
               on the stacked images of the projected units, `batch` units a call;
  project      `project` of the same units with `deconvnet`: the engine's maps plus the
               receptive field and the patch of each.
The units are the top 9 of the first `--projected-channels` channels of a scan of the
batch. Repetitions are interleaved (each runs every contender once, the order rotating),
so the noise of a shared machine spreads over all of them; rates come from median times.
`--clock process` (CPU only) times by the process's CPU time instead of the wall clock, for
a machine whose other load makes wall-clock times meaningless (use it with `--threads 1`).
Targets: scan at least 0.9× the forward pass's images per second; project at least 0.9×
the engine's projections per second.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch

from bench.engine import AUTOCAST, Setup
from bench.harness import run_grid, time_interleaved
from shared.spec.model import Preprocessing
from shared.spec.targets import LayerTarget
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps import layer_shapes, project, scan_batch
from worker.models.build import build_architecture

# The layer each model is scanned at by default: a middle stage, as in the paper's figures.
DEFAULT_LAYERS = {"resnet18": "layer3", "resnet50": "layer3", "vgg16": "features.23",
                  "timm:efficientnet_lite0": "blocks.4"}
K = 9
TARGET_SCAN_RATIO = 0.9
TARGET_PROJECT_RATIO = 0.9


def make_forward(model: torch.nn.Module, x: torch.Tensor, setup: Setup) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode(), setup.autocast():
            model(x).float().cpu()

    return run


def make_scan(engine: Engine, x: torch.Tensor, layer: str) -> Callable[[], None]:
    indices = list(range(len(x)))

    def run() -> None:
        scan_batch(engine, x, indices, layer, "all", K)

    return run


def build(model_name: str, batch: int, args: argparse.Namespace, setup: Setup):
    """The contenders for one model and batch, and the number of projected units."""
    torch.manual_seed(0)
    built = build_architecture(model_name, args.num_classes).eval()
    frozen = copy.deepcopy(built).requires_grad_(False).to(setup.device)
    x = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    x = x.to(setup.device)
    engine = Engine(built, device=setup.device, precision=setup.dtype)
    layer = args.layer or DEFAULT_LAYERS.get(model_name)
    if layer is None:
        shapes = list(layer_shapes(engine, args.size))
        layer = shapes[len(shapes) // 2]
    top = scan_batch(engine, x, list(range(batch)), layer, "all", K)
    units = top.entries(top.channels[:args.projected_channels])
    images = {i: x[i] for i in range(batch)}
    prep = Preprocessing(input_size=args.size, resize=args.size)

    def engine_projections() -> None:
        for start in range(0, len(units), batch):
            chunk = units[start:start + batch]
            stacked = torch.stack([images[t.index] for _, t in chunk])
            targets = [LayerTarget(layer, c, t.position) for c, t in chunk]
            engine.attribute(stacked, ["deconvnet"], targets)

    def our_projections() -> None:
        project(engine, layer, units, images, ["deconvnet"], prep, batch_size=batch)

    contenders = {
        "forward": make_forward(frozen, x, setup),
        "scan": make_scan(engine, x, layer),
        "engine": engine_projections,
        "project": our_projections,
    }
    return contenders, layer, len(units)


def bench_one(model_name: str, batch: int, args: argparse.Namespace, setup: Setup) -> dict:
    contenders, layer, n_units = build(model_name, batch, args, setup)
    measured = time_interleaved(contenders, args.repeats, args.warmup, setup.device)
    times = measured.cpu if args.clock == "process" else measured.wall

    def rate(name: str, count: int) -> float:
        return count / statistics.median(times[name])

    forward, scanned = rate("forward", batch), rate("scan", batch)
    engine, ours = rate("engine", n_units), rate("project", n_units)
    return {
        "model": model_name,
        "layer": layer,
        "batch": batch,
        "size": args.size,
        "device": setup.device.type,
        "dtype": setup.dtype,
        "forward_images_per_s": round(forward, 3),
        "scan_images_per_s": round(scanned, 3),
        "scan_ratio": round(scanned / forward, 3),
        "target_scan_ratio": TARGET_SCAN_RATIO,
        "units": n_units,
        "engine_projections_per_s": round(engine, 3),
        "projections_per_s": round(ours, 3),
        "project_ratio": round(ours / engine, 3),
        "target_project_ratio": TARGET_PROJECT_RATIO,
        "meets_target": scanned / forward >= TARGET_SCAN_RATIO
        and ours / engine >= TARGET_PROJECT_RATIO,
        "repeats": args.repeats,
        "clock": args.clock,
        "threads": torch.get_num_threads(),
        # the same ratios from each contender's fastest call: less sensitive to other load
        "scan_ratio_of_mins": round(min(times["forward"]) / min(times["scan"]), 3),
        "project_ratio_of_mins": round(min(times["engine"]) / min(times["project"]), 3),
        "median_s": {name: round(statistics.median(t), 4) for name, t in times.items()},
        "min_s": {name: round(min(t), 4) for name, t in times.items()},
    }


def print_table(rows: list[dict]) -> None:
    header = (f"{'model':<24} {'layer':<12} {'batch':>5} {'dtype':<8} {'fwd img/s':>9} "
              f"{'scan img/s':>10} {'scan/fwd':>8} {'engine proj/s':>13} {'proj/s':>8} "
              f"{'proj/eng':>8} {'target':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<24} {r['layer']:<12} {r['batch']:>5} {r['dtype']:<8} "
              f"{r['forward_images_per_s']:>9.2f} {r['scan_images_per_s']:>10.2f} "
              f"{r['scan_ratio']:>8.3f} {r['engine_projections_per_s']:>13.2f} "
              f"{r['projections_per_s']:>8.2f} {r['project_ratio']:>8.3f} "
              f"{'ok' if r['meets_target'] else 'MISS':>6}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet50,timm:efficientnet_lite0",
                        help="comma-separated torchvision names or timm:<name>")
    parser.add_argument("--layer", default=None,
                        help="the layer to scan (default: a middle stage of each model)")
    parser.add_argument("--batches", default="16", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per contender")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--projected-channels", type=int, default=4,
                        help="channels whose top 9 are projected")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(AUTOCAST), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="process: the process's CPU time (CPU only)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if args.clock == "process" and args.device != "cpu":
        parser.error("--clock process is for --device cpu")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = Setup(torch.device(args.device), args.dtype, channels_last=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"dtype {args.dtype}, size {args.size}, k {K}, repeats {args.repeats} (median "
          f"{args.clock} time)",
          flush=True)
    run_grid(args, lambda model, batch: [bench_one(model, batch, args, setup)],
             print_table)


if __name__ == "__main__":
    main()
