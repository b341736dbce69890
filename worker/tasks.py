"""The Celery tasks: thin, like views; `worker.pipeline` does the work.

A job arrives as chunks, `run_chunk(job_id, start, stop)`, so its items spread over every
worker. Reliability is declared here: acknowledged late (a lost worker's chunk is redelivered
and resumes where the first copy stopped), a hard time limit below the broker's visibility
timeout, retries with backoff for transient errors only, and a cap on attempts per chunk.
"""

from __future__ import annotations

import logging

import redis
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from shared.settings import Settings
from shared.taskqueue import QUEUE, RUN_CHUNK, RUN_JOB, send_chunks

log = logging.getLogger(__name__)
TRANSIENT = (OSError, redis.ConnectionError, redis.TimeoutError)


def register_tasks(app: Celery, settings: Settings) -> None:
    soft_limit = max(1, settings.task_time_limit_s - min(60, settings.task_time_limit_s // 10))

    @app.task(
        name=RUN_CHUNK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=settings.task_time_limit_s,
        soft_time_limit=soft_limit,
        max_retries=settings.max_attempts - 1,
        ignore_result=True,
    )
    def run_chunk(self: Task, job_id: str, start: int, stop: int) -> None:
        from worker import pipeline

        ctx = pipeline.context(settings)
        worker = self.request.hostname
        if ctx.store.begin_run(job_id, start) > settings.max_attempts:
            # This chunk's runs died that often (a worker killed mid-chunk each time).
            pipeline.fail_items(ctx, job_id, start, stop,
                                f"the worker was lost {settings.max_attempts} times", worker)
            ctx.store.end_run(job_id, start)
            return
        try:
            # Half the time limit per run; a long chunk continues in a fresh task.
            complete = pipeline.run_chunk(ctx, job_id, start, stop,
                                          budget_s=settings.task_time_limit_s / 2, worker=worker)
        except SoftTimeLimitExceeded:
            pipeline.fail_job(ctx, job_id, "the job exceeded the task time limit")
            complete = True
        except TRANSIENT as e:
            if isinstance(e, FileNotFoundError) or self.request.retries >= self.max_retries:
                pipeline.fail_job(ctx, job_id, f"gave up: {type(e).__name__}: {e}")
                return
            log.warning("job %s [%d:%d]: transient error, retrying: %s", job_id, start, stop, e)
            raise self.retry(exc=e, countdown=min(2**self.request.retries, 30)) from e
        except Exception as e:
            pipeline.fail_job(ctx, job_id, f"internal error: {type(e).__name__}: {e}")
            raise
        finally:
            ctx.store.end_run(job_id, start)
        if not complete:
            app.send_task(RUN_CHUNK, args=[job_id, start, stop], queue=QUEUE)

    @app.task(name=RUN_JOB, acks_late=True, ignore_result=True)
    def run_job(job_id: str) -> None:
        """A whole-job task queued before jobs were chunked: split it into chunks now."""
        from worker import pipeline

        job = pipeline.context(settings).store.get_job(job_id)
        if job is not None and not job.status.is_final:
            send_chunks(app, job_id, job.total, settings.chunk_size)
