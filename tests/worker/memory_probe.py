"""Peak memory of one large SmoothGrad request, in a fresh process (run by test_membudget).

    python tests/worker/memory_probe.py BUDGET_MB

Prints one JSON line. After a small warm-up call has paid the one-time costs (thread pools,
kernels), the kernel's high-water mark of the resident set (VmHWM) is reset to the current
size (`5` written to /proc/self/clear_refs); the peak growth is VmHWM after the call minus
the resident size before it. Everything the process touched counts: tensors, the
allocator's retained memory, library workspaces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.spec.methods import method_spec  # noqa: E402
from worker.engine.core import Engine  # noqa: E402

MB = 2**20


def status_bytes(field: str) -> int:
    """A memory figure of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def main(budget_mb: float) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # Cheap to run, heavy to hold: 16 channels at full resolution, max-pooled.
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                          nn.Linear(16 * 8 * 8, 4)).eval()
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    engine = Engine(model, memory_budget_mb=budget_mb)
    footprint = engine.footprint(x[:1])
    engine.attribute(x[:2], [method_spec("smoothgrad", samples=2)])

    rows: list[int] = []
    engine.model.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_bytes("VmRSS")
    result = engine.attribute(x, [method_spec("smoothgrad", samples=500)])
    peak = status_bytes("VmHWM")
    print(json.dumps({
        "maps": sum(len(image.maps) for image in result.images),
        "rows_per_pass": max(rows[1:]),
        "all_at_once_mb": round(64 * 500 * footprint.saved / MB, 1),
        "peak_growth_mb": round((peak - before) / MB, 1),
    }))


if __name__ == "__main__":
    main(float(sys.argv[1]))
