"""What the views share: settings, the job store, storage and the task sender."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app, g, request

from shared.jobstore import JobStore
from shared.settings import Settings
from shared.storage import Storage, make_storage
from shared.taskqueue import make_sender


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: JobStore
    storage: Storage
    sender: Celery

    @classmethod
    def create(cls, settings: Settings) -> Services:
        return cls(
            settings=settings,
            store=JobStore.from_url(settings.redis_url),
            storage=make_storage(settings),
            sender=make_sender(settings),
        )


def services() -> Services:
    return current_app.extensions["saliency"]


def tenant() -> str:
    """The tenant of the request's API key (`default` when no keys are configured)."""
    return g.tenant


def base_url() -> str:
    """Where clients reach this API: `SALIENCY_PUBLIC_URL`, else the request's host."""
    return services().settings.public_url or request.host_url.rstrip("/")
