"""The connections both sides open from the settings: Redis and the stores kept in it, the
object storage, and the places a job may read its inputs."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.settings import Settings
from shared.state.chunks import Chunks
from shared.state.fairqueue import FairQueue
from shared.state.itemlayout import ItemLayout, Rows, layout_of, read_rows
from shared.state.jobs import Job
from shared.state.jobstore import JobStore
from shared.state.modelstore import ModelStore
from shared.state.redisio import connect
from shared.storage.interface import Storage, make_storage
from shared.storage.locations import Locator


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

    def layout(self, job: Job, rows: Rows = read_rows) -> ItemLayout:
        """Where `job`'s items live (`rows` reads a data-set job's rows files)."""
        return layout_of(self.jobs, self.chunks, self.storage, job, rows)

    @staticmethod
    def open(settings: Settings) -> dict:
        """The fields of a `Stores` (for the dataclasses built on it), connections lazy."""
        client = connect(settings.redis_url)
        storage = make_storage(settings)
        return {"settings": settings, "redis": client, "jobs": JobStore(client),
                "chunks": Chunks(client), "fair": FairQueue(client, settings.lease_s),
                "models": ModelStore(client), "storage": storage,
                "locator": Locator(settings, storage)}
