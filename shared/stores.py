"""The connections both sides open from the settings: Redis and the stores kept in it, the
object storage, and the places a job may read its inputs."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.chunks import Chunks
from shared.fairqueue import FairQueue
from shared.jobstore import JobStore
from shared.locations import Locator
from shared.modelstore import ModelStore
from shared.redisio import connect
from shared.settings import Settings
from shared.storage import Storage, make_storage


@dataclass
class Stores:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    chunks: Chunks
    fair: FairQueue
    models: ModelStore
    storage: Storage
    locator: Locator

    @staticmethod
    def open(settings: Settings) -> dict:
        """The fields of a `Stores` (for the dataclasses built on it), connections lazy."""
        client = connect(settings.redis_url)
        storage = make_storage(settings)
        return {"settings": settings, "redis": client, "jobs": JobStore(client),
                "chunks": Chunks(client), "fair": FairQueue(client, settings.lease_s),
                "models": ModelStore(client), "storage": storage,
                "locator": Locator(settings, storage)}
