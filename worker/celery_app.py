"""The worker's Celery app: JSON only, late acks, one task at a time per process.

Two signal handlers: `setup_logging` hands logging to `shared.logs` (so Celery does not set up
its own, and `SALIENCY_LOG_FORMAT=json` covers Celery's records too), and `worker_process_init`
warms the pool child before its first task.
"""

from __future__ import annotations

import logging
import time

from celery import Celery, signals

from shared.logs import configure_logging
from shared.settings import Settings
from shared.taskqueue import celery_config
from worker.tasks import register_tasks

log = logging.getLogger(__name__)
# Importing torch and torch._dynamo in a fresh child takes seconds on a busy machine: far more
# than Celery's default 4 s wait for a new pool process to report for work.
PROCESS_START_TIMEOUT_S = 300


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("saliency-worker", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_proc_alive_timeout=PROCESS_START_TIMEOUT_S,
    )
    register_tasks(app, settings)

    def setup_logging(**_) -> None:
        configure_logging(settings)

    def warm_up(**_) -> None:
        warm_process(settings)

    # weak=False: the receivers are closures that would otherwise be collected at once.
    signals.setup_logging.connect(setup_logging, weak=False)
    signals.worker_process_init.connect(warm_up, weak=False)
    return app


def warm_process(settings: Settings) -> None:
    """Pay a pool child's one-time costs before its first task rather than during it.

    The allocator is told to keep freed memory (see `worker.allocator`); the pipeline
    context opens the connections and imports torch and the model code (torchvision, timm).
    `torch._dynamo` is imported explicitly: anything decorated with `torch._disable_dynamo`
    imports it on first use, about 4 s on a 2-core VM that the first job would otherwise
    wait for. The first task then pays only for its model.
    """
    start = time.perf_counter()
    from worker import pipeline
    from worker.allocator import keep_freed_memory

    keep_freed_memory()

    pipeline.context(settings)
    import torch
    import torch._dynamo  # noqa: F401

    log.info("worker process warmed up in %.1f s (torch threads: %d intra-op, %d inter-op)",
             time.perf_counter() - start, torch.get_num_threads(), torch.get_num_interop_threads())
