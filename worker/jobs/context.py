"""What a worker process keeps between tasks: settings, connections, caches and thread pools.

Created on first use in each pool process (after the fork, so the Celery parent never
imports torch), or explicitly by tests that call the worker's functions without Celery. The
reconciler's process keeps only a `ControlContext` (connections and the task sender): it
never imports torch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from shared.settings import Settings
from shared.state.stores import Stores
from shared.taskqueue import make_sender


@dataclass
class ControlContext(Stores):
    """Connections and the task sender: all that the control work (the reconciler) needs."""

    sender: Celery

    @classmethod
    def create(cls, settings: Settings, sender: Celery | None = None) -> ControlContext:
        return cls(**Stores.open(settings), sender=sender or make_sender(settings))


@dataclass
class WorkerContext(ControlContext):
    """Connections, the engine cache and the thread pools of one worker process."""

    # worker.jobs.model_cache.ModelCache (imported lazily: torch stays out of the parent)
    cache: Any
    artifact_dir: Path
    renderers: ThreadPoolExecutor
    loader: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "load"))

    @classmethod
    def create(cls, settings: Settings, sender: Celery | None = None) -> WorkerContext:
        import torch

        from worker.jobs.model_cache import ModelCache

        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        artifact_dir = Path(settings.data_dir, "cache", "models").absolute()
        artifact_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            **Stores.open(settings),
            sender=sender or make_sender(settings),
            cache=ModelCache(settings.model_cache_size, device, settings.precision,
                             settings.memory_budget_mb or None),
            artifact_dir=artifact_dir,
            renderers=ThreadPoolExecutor(settings.render_threads, "render"),
        )


_context: WorkerContext | None = None
_control: ControlContext | None = None


def context(settings: Settings, sender: Celery | None = None) -> WorkerContext:
    """The process's context, created on first use (in the worker child, after the fork)."""
    global _context
    if _context is None:
        _context = WorkerContext.create(settings, sender)
    return _context


def control_context(settings: Settings, sender: Celery | None = None) -> ControlContext:
    """The reconciler process's context, created on first use (in its pool child)."""
    global _control
    if _control is None:
        _control = ControlContext.create(settings, sender)
    return _control
