"""Task names and the Celery configuration both sides share.

The API sends tasks by name (`send_task`) with a Celery app that registers no tasks, so it
never imports the worker (nor torch). Task arguments are small JSON: a job id and the range of
item indices one task processes. A job is split into chunks of `SALIENCY_CHUNK_SIZE` items at
submit time, so its chunks spread over every worker and KEDA sees the work in the queue.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.settings import Settings

QUEUE = "saliency"
RUN_CHUNK = "saliency.run_chunk"
RUN_JOB = "saliency.run_job"  # before chunks: one task per job; still accepted, and split


def celery_config(settings: Settings) -> dict[str, Any]:
    """Configuration common to the sender (API) and the worker."""
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        # Celery's Redis transport redelivers a task unacknowledged for this long; the task's
        # hard time limit is below it (checked by Settings), so the first copy is dead by then.
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        "task_routes": {RUN_CHUNK: {"queue": QUEUE}, RUN_JOB: {"queue": QUEUE}},
        "enable_utc": True,
    }


def make_sender(settings: Settings) -> Celery:
    """A Celery app that only sends tasks by name."""
    app = Celery("saliency-api", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """The `[start, stop)` ranges of `size` items that cover `total` items (one for 0 items)."""
    return [(start, min(start + size, total)) for start in range(0, total, size)] or [(0, 0)]


def send_chunks(sender: Celery, job_id: str, total: int, size: int) -> int:
    """Enqueue one `run_chunk` task per chunk of the job, over one connection; returns how many.

    Each `send_task` is one LPUSH; sharing the producer saves the connection round trips, so a
    100,000-item job (1,563 tasks of 64) is enqueued in a fraction of a second.
    """
    ranges = chunks(total, size)
    with sender.producer_or_acquire() as producer:
        for start, stop in ranges:
            sender.send_task(RUN_CHUNK, args=[job_id, start, stop], queue=QUEUE,
                             producer=producer)
    return len(ranges)


def queue_depth(redis_client: Any) -> int:
    """Tasks waiting in the queue (Celery's Redis transport keeps them in a list per queue)."""
    return int(redis_client.llen(QUEUE))
