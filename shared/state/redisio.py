"""The Redis connection every process uses, and the prefix of every key (`saliency:`; the
job record's keys are named in `shared.state.jobschema`). Connections time out quickly, so that a
Redis outage is an error a request or a task can handle (503, a retry), never a hang.
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
