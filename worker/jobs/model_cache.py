"""The engines of a worker process: one per model, kept while recently used.

Building an engine copies the model onto its device, so a worker keeps the engines it used
last, up to `SALIENCY_MODEL_CACHE_SIZE` of them, and shares them between its threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from shared.spec.model import Preprocessing
from worker.engine.core import Engine


class ModelCache:
    """A least-recently-used cache of engines, shared by the threads of one worker process."""

    def __init__(self, capacity: int, device: str = "cpu", precision: str = "float32",
                 memory_budget_mb: int | None = None) -> None:
        self.capacity = capacity
        self.device = device
        self.precision = precision
        self.memory_budget_mb = memory_budget_mb
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], nn.Module],
            preprocessing: Preprocessing | None = None) -> Engine:
        """The engine for `key`, building it with `load()` on a miss; `preprocessing` gives
        it the normalization of its inputs (for pixel-space baselines and fills)."""
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            norm = {"mean": preprocessing.mean, "std": preprocessing.std} if preprocessing else {}
            engine = Engine(load(), device=self.device, precision=self.precision,
                            memory_budget_mb=self.memory_budget_mb, **norm)
            self._engines[key] = engine
            while len(self._engines) > self.capacity:
                self._engines.popitem(last=False)
            return engine

    def __len__(self) -> int:
        return len(self._engines)
