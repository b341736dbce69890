"""Task names and the Celery configuration both sides share.

The API sends tasks by name (`send_task`) with a Celery app that registers no tasks, so it
never imports the worker (nor torch). Task arguments are small JSON: a job id.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.settings import Settings

QUEUE = "saliency"
RUN_JOB = "saliency.run_job"


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
        "task_routes": {RUN_JOB: {"queue": QUEUE}},
        "enable_utc": True,
    }


def make_sender(settings: Settings) -> Celery:
    """A Celery app that only sends tasks by name."""
    app = Celery("saliency-api", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def send_run_job(sender: Celery, job_id: str) -> None:
    sender.send_task(RUN_JOB, args=[job_id], queue=QUEUE)


def queue_depth(redis_client: Any) -> int:
    """Tasks waiting in the queue (Celery's Redis transport keeps them in a list per queue)."""
    return int(redis_client.llen(QUEUE))
