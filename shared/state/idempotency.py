"""Idempotency keys: a retried submit with the same `Idempotency-Key` gets the same job.

The key remembers the request's fingerprint (the sha256 of its canonical spec and of every
file part), so the same key sent with a different request is refused (`422
idempotency_mismatch`) rather than silently answered with the old job.
"""

from __future__ import annotations

import redis

from shared.state.redisio import PREFIX


def idempotency_key(tenant: str, key: str) -> str:
    return f"{PREFIX}idem:{tenant}:{key}"


class IdempotencyKeys:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def reserve(self, tenant: str, key: str, job_id: str, fingerprint: str,
                ttl_s: int) -> tuple[str, str] | None:
        """Claim `key` for `job_id`; returns (job id, fingerprint) of a request that already
        holds it, if any."""
        name = idempotency_key(tenant, key)
        if self.redis.set(name, f"{job_id}:{fingerprint}", nx=True, ex=ttl_s):
            return None
        held = self.redis.get(name) or ""
        job, _, print_ = held.partition(":")
        return (job, print_) if job else None

    def release(self, tenant: str, key: str) -> None:
        self.redis.delete(idempotency_key(tenant, key))
