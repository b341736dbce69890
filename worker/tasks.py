"""The Celery task: thin, like a view; `worker.pipeline` does the work.

Reliability is declared here: acknowledged late (a lost worker's task is redelivered and
resumes where the first copy stopped), a hard time limit below the broker's visibility
timeout, retries with backoff for transient errors only, and a cap on attempts.
"""

from __future__ import annotations

import logging

import redis
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from shared.settings import Settings
from shared.taskqueue import QUEUE, RUN_JOB

log = logging.getLogger(__name__)
TRANSIENT = (OSError, redis.ConnectionError, redis.TimeoutError)


def register_tasks(app: Celery, settings: Settings) -> None:
    soft_limit = max(1, settings.task_time_limit_s - min(60, settings.task_time_limit_s // 10))

    @app.task(
        name=RUN_JOB,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=settings.task_time_limit_s,
        soft_time_limit=soft_limit,
        max_retries=settings.max_attempts - 1,
        ignore_result=True,
    )
    def run_job(self: Task, job_id: str) -> None:
        from worker import pipeline

        ctx = pipeline.context(settings)
        if ctx.store.begin_run(job_id) > settings.max_attempts:
            pipeline.fail_job(ctx, job_id, f"the worker was lost {settings.max_attempts} times")
            ctx.store.end_run(job_id)
            return
        try:
            # Half the time limit per run; a long job continues in a fresh task.
            complete = pipeline.run_job(ctx, job_id, budget_s=settings.task_time_limit_s / 2)
        except SoftTimeLimitExceeded:
            pipeline.fail_job(ctx, job_id, "the job exceeded the task time limit")
            complete = True
        except TRANSIENT as e:
            if isinstance(e, FileNotFoundError) or self.request.retries >= self.max_retries:
                pipeline.fail_job(ctx, job_id, f"gave up: {type(e).__name__}: {e}")
                return
            log.warning("job %s: transient error, retrying: %s", job_id, e)
            raise self.retry(exc=e, countdown=min(2**self.request.retries, 30)) from e
        except Exception as e:
            pipeline.fail_job(ctx, job_id, f"internal error: {type(e).__name__}: {e}")
            raise
        finally:
            ctx.store.end_run(job_id)
        if not complete:
            app.send_task(RUN_JOB, args=[job_id], queue=QUEUE)
