"""The Redis connection every process uses, and the naming of the service's Redis keys.

Every key lives under `saliency:`. Connections time out quickly, so that a Redis outage is
an error a request or a task can handle (503, a retry), never a hang.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis

PREFIX = "saliency:"
SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 3
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


def connect(url: str) -> redis.Redis:
    """A client for `url` (`redis://`, `rediss://` for TLS, with a password if any)."""
    return redis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30,
        socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry_on_timeout=False,
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    return int(time.time() * 1000)


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def job_sub(job_id: str, what: str) -> str:
    return f"{PREFIX}job:{job_id}:{what}"


def lease_key(job_id: str, part: str) -> str:
    """The lease of one chunk (`part` is its start) or of the job's control task (`ctl`)."""
    return f"{PREFIX}lease:{job_id}:{part}"


ACTIVE_JOBS = PREFIX + "active"  # ids of jobs not yet final: what the reconciler examines
WORKERS = PREFIX + "workers"  # worker name -> last heartbeat (ms), a sorted set
RECONCILERS = PREFIX + "reconcilers"  # the same for the reconciler's process
STATS = PREFIX + "stats"
WEBHOOKS_DUE = PREFIX + "webhooks:due"  # "job:event:attempt" -> when it is due (unix s)
LATENCY = PREFIX + "stats:job_latency"


def tenant_key(tenant: str, what: str) -> str:
    return f"{PREFIX}tenant:{tenant}:{what}"
