"""Which items were in flight when a run of their chunk was lost (its worker killed, or hung
until its lease was taken over).

Before each load a run records its window — the batch the model is on and the batch being
read — under the chunk. A run that ends writes nothing more and clears it; so a window found
at the start of the next run names the items in flight when the last one died, and each of
them is charged one loss. An item charged `SALIENCY_MAX_ATTEMPTS` losses fails alone; the
chunk's neighbours, in flight with it only once, are charged at most once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis import Redis

from shared.redisio import job_sub


class LostItems:
    """The in-flight window of each chunk of a job, and each item's losses."""

    def __init__(self, redis: Redis, job_id: str, start: int) -> None:
        self.redis, self.field = redis, str(start)
        self.window_key = job_sub(job_id, "inflight")
        self.losses_key = job_sub(job_id, "losses")

    def charge_last_run(self) -> list[int]:
        """Charge a loss to each item the last run left in flight; returns them."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.window_key, self.field)
        pipe.hdel(self.window_key, self.field)
        raw = pipe.execute()[0]
        items = json.loads(raw) if raw else []
        if items:
            pipe = self.redis.pipeline(transaction=False)
            for i in items:
                pipe.hincrby(self.losses_key, str(i), 1)
            pipe.execute()
        return items

    def losses(self, indices: Sequence[int]) -> dict[int, int]:
        """How many lost runs each item was in flight in (items never in one left out)."""
        if not indices:
            return {}
        counts = self.redis.hmget(self.losses_key, [str(i) for i in indices])
        return {i: int(n) for i, n in zip(indices, counts, strict=True) if n}

    def in_flight(self, indices: Sequence[int]) -> None:
        """Record the items about to be read or run (before reading them)."""
        self.redis.hset(self.window_key, self.field, json.dumps(list(indices)))

    def clear(self) -> None:
        """The run ended: nothing of it is in flight any more."""
        self.redis.hdel(self.window_key, self.field)
