"""The worker's Celery app: JSON only, late acks, one task at a time per process."""

from __future__ import annotations

from celery import Celery

from shared.settings import Settings
from shared.taskqueue import celery_config
from worker.tasks import register_tasks


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
    )
    register_tasks(app, settings)
    return app
