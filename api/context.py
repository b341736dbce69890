"""What the views share: settings, the stores, storage, the task sender, the URL signer."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app, g

from api.signing import Signer, signing_key
from shared.chunks import Chunks
from shared.fairqueue import FairQueue
from shared.jobs import JobStore
from shared.locations import Locator
from shared.modelstore import ModelStore
from shared.redisio import connect
from shared.settings import Settings
from shared.storage import Storage, make_storage
from shared.taskqueue import make_sender


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    chunks: Chunks
    fair: FairQueue
    models: ModelStore
    storage: Storage
    locator: Locator
    sender: Celery
    signer: Signer

    @classmethod
    def create(cls, settings: Settings) -> Services:
        client = connect(settings.redis_url)
        storage = make_storage(settings)
        return cls(
            settings=settings,
            redis=client,
            jobs=JobStore(client),
            chunks=Chunks(client),
            fair=FairQueue(client, settings.lease_s),
            models=ModelStore(client),
            storage=storage,
            locator=Locator(settings, storage),
            sender=make_sender(settings),
            signer=Signer(signing_key(settings), settings.presign_expires_s),
        )


def services() -> Services:
    return current_app.extensions["saliency"]


def tenant() -> str:
    """The tenant of the request's API key (`default` when no keys are configured)."""
    return g.tenant


def base_url() -> str:
    """Where clients reach this API: `SALIENCY_PUBLIC_URL`, else the configured bind address
    (never the request's `Host` header, which a client chooses)."""
    settings = services().settings
    if settings.public_url:
        return settings.public_url
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"
