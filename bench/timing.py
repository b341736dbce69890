"""Timing contenders side by side: interleaved repeats, so the noise of a shared machine
spreads over all of them alike."""

from __future__ import annotations

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
