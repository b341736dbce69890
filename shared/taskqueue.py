"""Task names, queues and the Celery configuration both sides share, and sending chunks.

The API sends tasks by name (`send_task`) with a Celery app that registers no tasks, so it
never imports the worker (nor torch). Task arguments are small JSON: ids and indices. Chunks
go to the `saliency` queue a window at a time (`shared.state.fairqueue`); the job's control tasks
(planning, finalizing, validating a model, webhooks) and the retention sweep go to
`saliency.control`, which every worker also consumes. The reconciler goes to a queue of its
own, `saliency.reconcile`, which only the reconciler process consumes, one task at a time:
no work task, however long, can delay it.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery

from shared.settings import Settings
from shared.state.fairqueue import FairQueue

QUEUE = "saliency"
CONTROL_QUEUE = "saliency.control"
QUEUES = (CONTROL_QUEUE, QUEUE)  # what the workers consume
RECONCILE_QUEUE = "saliency.reconcile"  # what only the reconciler process consumes

RUN_CHUNK = "saliency.run_chunk"  # (job_id, start)
PLAN = "saliency.plan"  # (job_id): stream a data set into chunks
NEXT_PHASE = "saliency.next_phase"  # (job_id): start the next phase, or finalize
VALIDATE_MODEL = "saliency.validate_model"  # (tenant, name)
DELIVER_WEBHOOK = "saliency.deliver_webhook"  # (job_id, event, attempt)
RECONCILE = "saliency.reconcile"  # periodic
SWEEP = "saliency.sweep"  # periodic: expired jobs
PING = "saliency.ping"  # (worker name): proves a worker still consumes its queues

CONTROL_TASKS = (PLAN, NEXT_PHASE, VALIDATE_MODEL, DELIVER_WEBHOOK, SWEEP)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Configuration common to the sender (API) and the worker."""
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        # Celery's Redis transport redelivers a task unacknowledged for this long; the task's
        # hard time limit is below it (checked by Settings), so the first copy is dead by then.
        # Lost chunks are found far sooner by their leases (`worker.jobs.reconciler`).
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        "task_routes": {RUN_CHUNK: {"queue": QUEUE}, RECONCILE: {"queue": RECONCILE_QUEUE},
                        **{name: {"queue": CONTROL_QUEUE} for name in CONTROL_TASKS}},
        "enable_utc": True,
    }


def make_sender(settings: Settings) -> Celery:
    """A Celery app that only sends tasks by name."""
    app = Celery("saliency-sender", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """The `[start, stop)` ranges of `size` items that cover `total` items."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def pump(sender: Celery, fair: FairQueue) -> int:
    """Send the next chunks, round-robin across tenants, up to the window; returns how many.

    A chunk taken from the ready lists but not sent (the broker failed) stays `sent` in the
    ledger; the reconciler sends it again.
    """
    refs = fair.pop()
    if refs:
        with sender.producer_or_acquire() as producer:
            for job_id, start in refs:
                sender.send_task(RUN_CHUNK, args=[job_id, start], queue=QUEUE,
                                 producer=producer)
    return len(refs)


def send_control(sender: Celery, name: str, *args: Any, countdown: float | None = None) -> None:
    sender.send_task(name, args=list(args), queue=CONTROL_QUEUE, countdown=countdown)


def queue_depth(client: redis.Redis, fair: FairQueue) -> int:
    """Work waiting: tasks in Celery's queues plus chunks in the tenants' ready lists."""
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(queue)
    return int(sum(pipe.execute())) + fair.depth()
