"""The Celery tasks: thin, like views; `worker.jobs.runner` and friends do the work.

Reliability is declared here and in `worker.celery_app`: chunk tasks are acknowledged late
and rejected on a lost worker (the broker redelivers them), and every task body is guarded
by a lease of its own (`shared.state.chunks`), so a redelivered or duplicated task does nothing
while another copy holds the work, and the reconciler restarts what a lost worker held long
before the broker's visibility timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from shared.state.redisio import now_ms
from shared.taskqueue import (
    DELIVER_WEBHOOK,
    NEXT_PHASE,
    PING,
    PLAN,
    RECONCILE,
    RUN_CHUNK,
    SWEEP,
    VALIDATE_MODEL,
)
from worker.jobs.context import WorkerContext, context, control_context

log = logging.getLogger(__name__)
PONG_KEY = "saliency:pong:"


def _ctx(task: Task) -> WorkerContext:
    return context(task.app.conf["saliency_settings"], task.app)


def run_chunk(self: Task, job_id: str, start: int) -> None:
    from worker.jobs import runner

    runner.run_chunk(_ctx(self), job_id, int(start), self.request.hostname or "worker")


def plan(self: Task, job_id: str) -> None:
    from worker.jobs import runner

    runner.plan(_ctx(self), job_id)


def next_phase(self: Task, job_id: str) -> None:
    from worker.jobs import runner

    runner.advance(_ctx(self), job_id)


def validate_model(self: Task, tenant: str, name: str) -> None:
    from worker.jobs import runner

    runner.validate(_ctx(self), tenant, name)


def reconcile(self: Task) -> None:
    from worker.jobs.reconciler import reconcile as run

    run(control_context(self.app.conf["saliency_settings"], self.app))


def sweep(self: Task) -> None:
    from worker.jobs.retention import sweep as run

    run(_ctx(self))


def deliver_webhook(self: Task, job_id: str, event: str, attempt: int = 0) -> None:
    from worker.jobs.webhooks import deliver

    deliver(_ctx(self), job_id, event, int(attempt))


def ping(self: Task, worker: str) -> None:
    """Answer a worker's own liveness probe: it proves the worker still consumes."""
    _ctx(self).redis.set(PONG_KEY + worker, now_ms(), ex=3600)


TASKS: dict[str, tuple[Any, dict[str, Any]]] = {
    RUN_CHUNK: (run_chunk, {"acks_late": True, "reject_on_worker_lost": True}),
    PLAN: (plan, {"acks_late": True, "reject_on_worker_lost": True}),
    NEXT_PHASE: (next_phase, {"acks_late": True, "reject_on_worker_lost": True}),
    VALIDATE_MODEL: (validate_model, {"acks_late": True, "reject_on_worker_lost": True}),
    DELIVER_WEBHOOK: (deliver_webhook, {"acks_late": True}),
    RECONCILE: (reconcile, {"acks_late": False, "expires": 60}),
    SWEEP: (sweep, {"acks_late": False, "expires": 600}),
    PING: (ping, {"acks_late": False, "expires": 120}),
}


def register_tasks(app: Celery) -> None:
    """Register every task on the worker's app, by its public name."""
    for name, (fn, options) in TASKS.items():
        app.task(name=name, bind=True, ignore_result=True, **options)(fn)
