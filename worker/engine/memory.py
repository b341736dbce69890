"""How many rows (images, noisy copies, path points, patch positions) one pass may hold.

The estimate. One forward pass of one image, with autograd's saved-tensor hooks counting the
bytes it keeps for the backward pass (distinct storages, the model's own parameters and
buffers excluded), gives per row:

- with gradients: `saved + 2 × largest + 4 × input`, where `largest` is the largest saved
  tensor (the backward pass holds the gradient flowing into a layer and out of it at once)
  and `input` one row's input (the row itself, its gradient, and the method's working copies);
- without (occlusion): `4 × largest + 2 × input` (a layer's input and output, a residual
  branch, the row);

each times `SAFETY` (3), for what the count cannot see: allocator rounding and retention,
convolution workspaces, autocast's weight copies. Measured on CPU (peak resident growth per
row, docs/engine.md), the estimate with gradients is 1.7-3.0 times the real need, and the
forward-only one 3.7-6.6 times. The probe runs once per input shape and engine.

The budget. `memory_budget_mb` when given (the service passes `SALIENCY_MEMORY_BUDGET_MB`);
else, on CUDA, 90 % of the free device memory plus what PyTorch's allocator holds unused, and
on CPU, where running out kills the process, a quarter of the memory the kernel reports
available. The maps the call returns are counted against it first. A request whose one row
does not fit is refused with a `TooLargeError` before anything runs; otherwise every pass
holds as many rows as fit, and on an out-of-memory error the rows are halved and retried.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shared.errors import TooLargeError

log = logging.getLogger(__name__)

SAFETY = 3
CPU_SHARE = 0.25
CUDA_SHARE = 0.9
MB = 2**20


@dataclass(frozen=True)
class Footprint:
    """Bytes one row of one input shape needs in a pass (see the module docstring)."""

    saved: int
    largest: int
    input: int

    def per_row(self, grad: bool) -> int:
        if grad:
            return SAFETY * (self.saved + 2 * self.largest + 4 * self.input)
        return SAFETY * (4 * self.largest + 2 * self.input)


def measure_footprint(model: nn.Module, x1: torch.Tensor, autocast: Callable[[], Any]
                      ) -> Footprint:
    """Count what autograd saves in a forward pass of the one image `x1` (1×C×H×W)."""
    constant = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> None:
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in constant:
            storages[ptr] = max(storages.get(ptr, 0), tensor.untyped_storage().nbytes())
        # Nothing is kept: this pass runs no backward, and a node keeping its own output
        # would be a cycle through autograd that the garbage collector cannot free (the
        # graph, and with it every weight it saved, would outlive the engine).

    x = x1.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda _: None), autocast():
        model(x)
    input_bytes = x.numel() * x.element_size()
    return Footprint(saved=sum(storages.values()), largest=max(storages.values(), default=0),
                     input=input_bytes)


def _cpu_available() -> int:
    """Bytes the kernel reports available (MemAvailable), else free pages (non-Linux)."""
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def budget_bytes(device: torch.device, memory_budget_mb: int | None) -> int:
    """The bytes one call may use beyond what is held before it (see the module docstring)."""
    if memory_budget_mb:
        return int(memory_budget_mb * MB)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(CUDA_SHARE * (free + cached))
    return int(CPU_SHARE * _cpu_available())


def rows_that_fit(per_row: int, budget: int, what: str) -> int:
    """How many rows of `per_row` bytes fit in `budget`; a TooLargeError if not even one."""
    if per_row > budget:
        raise TooLargeError(
            f"{what} needs about {per_row / MB:.0f} MB for one image at this input size and "
            f"the memory budget leaves {max(budget, 0) / MB:.0f} MB; use a smaller input or "
            "model, or raise SALIENCY_MEMORY_BUDGET_MB"
        )
    return max(1, budget // per_row)


def in_micro_batches(total: int, size: int, build: Callable[[int, int], Any],
                     compute: Callable[[Any, int, int], None], device: torch.device) -> int:
    """Run rows 0..total in passes of at most `size` rows; returns the size that worked.

    `build(start, stop)` makes the rows' input once, in order; `compute(rows, start, stop)`
    uses it and must keep nothing of a pass that fails. On an out-of-memory error the rows of
    that pass are halved and computed again, and later passes keep the smaller size.
    """
    start = 0
    while start < total:
        stop = min(total, start + size)
        rows = build(start, stop)
        pending = [(start, stop)]
        while pending:
            a, b = pending.pop(0)
            if b - a > size:  # a pass after a failure: at the smaller size from the outset
                pending[:0] = [(i, min(i + size, b)) for i in range(a, b, size)]
                continue
            failed = False
            try:
                compute(_rows(rows, a - start, b - start), a, b)
            except torch.OutOfMemoryError:
                if b - a == 1:
                    raise
                failed = True  # handled outside the except block, once its frames are freed
            if failed:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                size = max(1, (b - a) // 2)
                log.warning("out of memory at %d rows a pass; retrying with %d", b - a, size)
                pending.insert(0, (a, b))
        start = stop
    return size


def _rows(rows: Any, a: int, b: int) -> Any:
    if isinstance(rows, tuple):
        return tuple(r[a:b] for r in rows)
    return rows[a:b]
