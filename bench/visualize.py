"""Visualization steps per second against the autograd floor, side by side in one run.

    .venv/bin/python -m bench.visualize --models efficientnet_lite0 --batches 8 --size 224 \
        --repeats 5 --device cpu --json bench/results/visualize.json

Contenders, per model and batch, on the engine's frozen eval-mode model:
  floor     forward of a batch + the gradient of each image's class logit with respect to the
            input, plain autograd (no parametrization, transforms or optimizer): the least one
            optimization step can cost;
  default   `VisualizationRun.step` for class objectives with the default regularizers
            (Fourier parametrization, random jitter, scale and rotation, Adam);
  pixel     the same with the pixel parametrization and no transformation;
  all       every regularizer at once: blur every step, both clips, l2, TV and α-norm.
Each timed call runs `--steps` steps (the floor as many forward + gradient passes).
Repetitions are interleaved (each repeat runs every contender once, in a rotating order), so
the noise of a shared machine spreads over all of them; steps/s come from the median time.
Beside that ratio: the ratio of the fastest calls, and on the CPU the ratio of the median
process CPU times (the work done, whatever other processes made the step wait for).
The target is a throughput of at least 0.85 of the floor's at batch 8, for `default`.

`--models` takes `efficientnet_lite0` (the built-in model, ImageNet weights, converted on
first use under $SALIENCY_DATA_DIR/cache/builtin) or torchvision names (seeded weights).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch

from bench.harness import run_grid, time_interleaved
from shared.spec.model import Preprocessing, parse_model_spec
from shared.spec.visualize import parse_visualize_spec
from worker.engine.core import Engine, model_logits
from worker.kinds.visualize import VisualizationRun

TARGET = {"default": 0.85, "pixel": None, "all": None}
REGULARIZERS = {
    "default": {},
    "pixel": {"parametrization": "pixel", "jitter": None, "scale": None, "rotate": None},
    "all": {"blur": {"every": 1, "sigma": 0.5}, "clip_norm": 5, "clip_contribution": 5,
            "l2": 1e-3, "tv": {"weight": 0.05}, "alpha_norm": {"weight": 1e-5}},
}


def load_model(name: str) -> tuple[torch.nn.Module, Preprocessing]:
    """The built-in EfficientNet-Lite0, or a torchvision classifier with seeded weights."""
    if name == "efficientnet_lite0":
        from worker.models.build import build_model
        from worker.models.builtin import EFFICIENTNET_LITE0_SPEC, efficientnet_lite0_artifact

        spec = parse_model_spec(EFFICIENTNET_LITE0_SPEC)
        return build_model(spec, efficientnet_lite0_artifact()), spec.preprocessing
    from worker.models.build import build_architecture

    torch.manual_seed(0)
    return build_architecture(name, 1000), Preprocessing()


def make_floor(engine: Engine, batch: int, size: int, steps: int,
               classes: list[int]) -> Callable[[], None]:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    x = x.to(engine.device)
    index = torch.tensor(classes, device=engine.device)[:, None]

    def run() -> None:
        for _ in range(steps):
            inputs = x.detach().requires_grad_(True)
            logits = model_logits(engine.model(inputs))
            (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), inputs)
            grad.float().cpu()

    return run


def make_run(engine: Engine, prep: Preprocessing, batch: int, size: int, steps: int,
             total: int, classes: list[int], regularizers: dict) -> Callable[[], None]:
    spec = parse_visualize_spec(
        {"model": "m", "objective": [{"class": c} for c in classes], "size": size,
         "steps": total, "batch": batch, "snapshot_every": 0, "regularizers": regularizers},
        max_steps=total)
    run = VisualizationRun.start(engine, spec, spec.items(), preprocessing=prep)
    return lambda: run.step(steps)


def bench_one(model_name: str, batch: int, args: argparse.Namespace) -> list[dict]:
    model, prep = load_model(model_name)
    device = torch.device(args.device)
    engine = Engine(model, device=device)
    classes = [(281 + 97 * i) % 1000 for i in range(batch)]
    total = (args.warmup + args.repeats) * args.steps
    contenders = {"floor": make_floor(engine, batch, args.size, args.steps, classes)}
    for label, regularizers in REGULARIZERS.items():
        contenders[label] = make_run(engine, prep, batch, args.size, args.steps, total, classes,
                                     regularizers)
    measured = time_interleaved(contenders, args.repeats, args.warmup, device)
    times, cpu_times = measured.wall, measured.cpu

    def steps_per_s(name: str) -> float:
        return args.steps / statistics.median(times[name])

    def cpu_ratio(name: str) -> float | None:
        """Floor over contender in process CPU time: on a CPU shared with other processes,
        the work each step does, whatever the waiting (meaningless on CUDA)."""
        if device.type != "cpu":
            return None
        return round(statistics.median(cpu_times["floor"]) / statistics.median(cpu_times[name]),
                     3)

    floor = steps_per_s("floor")
    rows = []
    for label in REGULARIZERS:
        ours = steps_per_s(label)
        target = TARGET[label]
        rows.append({
            "model": model_name,
            "batch": batch,
            "size": args.size,
            "device": device.type,
            "threads": torch.get_num_threads(),
            "contender": label,
            "steps_per_s": round(ours, 3),
            "floor_steps_per_s": round(floor, 3),
            "ratio_to_floor": round(ours / floor, 3),
            "target_ratio": target,
            "meets_target": None if target is None else ours / floor >= target,
            "median_s": round(statistics.median(times[label]), 4),
            "floor_median_s": round(statistics.median(times["floor"]), 4),
            # The fastest calls' ratio: less sensitive to other processes on a shared machine.
            "ratio_of_min_times": round(min(times["floor"]) / min(times[label]), 3),
            "cpu_time_ratio": cpu_ratio(label),
            "steps_per_call": args.steps,
            "repeats": args.repeats,
        })
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'model':<18} {'batch':>5} {'size':>4} {'device':<6} {'contender':<9} "
              f"{'steps/s':>8} {'floor/s':>8} {'ratio':>6} {'min ratio':>9} {'cpu ratio':>9} "
              f"{'target':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        target = "-" if r["meets_target"] is None else ("ok" if r["meets_target"] else "MISS")
        cpu = "-" if r["cpu_time_ratio"] is None else f"{r['cpu_time_ratio']:.3f}"
        print(f"{r['model']:<18} {r['batch']:>5} {r['size']:>4} {r['device']:<6} "
              f"{r['contender']:<9} {r['steps_per_s']:>8.3f} {r['floor_steps_per_s']:>8.3f} "
              f"{r['ratio_to_floor']:>6.3f} {r['ratio_of_min_times']:>9.3f} {cpu:>9} {target:>7}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="efficientnet_lite0", help="comma-separated")
    parser.add_argument("--batches", default="8", help="comma-separated batch sizes")
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per contender")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per contender")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", dest="json_path", default=None, help="write the rows here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device "
          f"{args.device}, {args.steps} steps per call, {args.repeats} repeats (median time)",
          flush=True)
    run_grid(args, lambda model, batch: bench_one(model, batch, args), print_table)


if __name__ == "__main__":
    main()
