"""Waiting in tests: poll a condition until it holds, never sleep a fixed time and hope.

`wait_until` is the one loop; `job_final` and `model_ready` are the two conditions the stack
tests wait on most. A module of its own, imported by name (as `stacks`), so that every suite
shares it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

T = TypeVar("T")
FINAL = frozenset({"succeeded", "failed", "cancelled"})


def wait_until(what: str, probe: Callable[[], T], *, until: Callable[[T], Any] = bool,
               timeout: float = 120, every: float = 0.1,
               tolerate: tuple[type[BaseException], ...] = ()) -> T:
    """Call `probe()` every `every` s until `until(value)` holds, and return that value.

    After `timeout` s it fails naming `what` was awaited and the last value seen. Errors of
    the `tolerate` types (a service restarting) count as a value not yet there."""
    deadline = time.monotonic() + timeout
    last: Any = "nothing yet"
    while True:
        try:
            value = probe()
        except tolerate as e:
            last = e
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last seen: {last!r}"[:4000])
        time.sleep(every)


def job_final(session: Any, url: str, job_id: str, *, timeout: float = 240,
              every: float = 0.1) -> dict:
    """Poll `GET /v1/jobs/{job_id}` (with `session`: a `requests.Session` or the module)
    until the job is final; the job."""
    return wait_until(
        f"job {job_id} final",
        lambda: session.get(f"{url}/v1/jobs/{job_id}", timeout=30).json(),
        until=lambda job: job.get("status") in FINAL, timeout=timeout, every=every,
        tolerate=(requests.ConnectionError, ValueError))


def model_ready(session: Any, url: str, name: str, *, timeout: float = 120) -> dict:
    """Poll `GET /v1/models/{name}` until a worker has validated the model (or found it
    invalid); the model's record. Callers assert the status they expect."""
    return wait_until(
        f"model {name} validated",
        lambda: session.get(f"{url}/v1/models/{name}", timeout=10).json(),
        until=lambda record: record.get("status") != "validating", timeout=timeout,
        every=0.2)
