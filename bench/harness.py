"""What the benchmarks share: timing contenders side by side with interleaved repeats (so the
noise of a shared machine spreads over all of them alike), and running a grid of models and
batch sizes with the rows printed and written as they come."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Times:
    """Seconds per call of each contender: wall clock and the process's CPU time."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def time_interleaved(contenders: dict[str, Callable[[], None]], repeats: int, warmup: int,
                     device: torch.device) -> Times:
    """Time each contender `repeats` times after `warmup` untimed calls; every repeat runs all
    of them, the order rotating."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    sync(device)
    times = Times({name: [] for name in names}, {name: [] for name in names})
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            sync(device)
            started, started_cpu = time.perf_counter(), time.process_time()
            contenders[name]()
            sync(device)
            times.wall[name].append(time.perf_counter() - started)
            times.cpu[name].append(time.process_time() - started_cpu)
    return times


def run_grid(args: argparse.Namespace, one: Callable[[str, int], list[dict]],
             print_table: Callable[[list[dict]], None]) -> list[dict]:
    """`one(model, batch)` for each of `args.models` × `args.batches` (comma-separated), each
    result printed as it comes and all rows written to `args.json_path` after each (a run cut
    short keeps its rows); then the whole table. The rows."""
    rows: list[dict] = []
    for model_name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            started = time.perf_counter()
            new = one(model_name, batch)
            rows.extend(new)
            print(f"# {model_name} batch {batch}: {time.perf_counter() - started:.0f} s",
                  flush=True)
            print_table(new)
            if args.json_path:
                with open(args.json_path, "w") as f:
                    json.dump(rows, f, indent=1)
    print()
    print_table(rows)
    return rows
