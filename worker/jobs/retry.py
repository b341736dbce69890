"""Retrying transient failures (storage, Redis) within a time budget, with backoff.

Only `StorageError` and Redis connection errors are transient. Bad input (`InputError`,
`FileNotFoundError`) is never retried: it fails its item at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from shared.state.redisio import TRANSIENT as REDIS_TRANSIENT
from shared.storage.interface import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT: tuple[type[BaseException], ...] = (StorageError, *REDIS_TRANSIENT)
MAX_SLEEP_S = 10.0


class BudgetSpent(Exception):
    """Transient errors outlasted the retry budget; the work is handed back for later."""


def retrying(fn: Callable[[], T], budget_s: float, what: str,
             should_stop: Callable[[], bool] = lambda: False) -> T:
    """`fn()`, retried on transient errors with exponential backoff for up to `budget_s`."""
    deadline = time.monotonic() + budget_s
    delay = 0.2
    while True:
        try:
            return fn()
        except TRANSIENT as e:
            from worker.jobs.metrics import RETRIES

            RETRIES.labels(what.split(" ", 1)[0]).inc()
            left = deadline - time.monotonic()
            if left <= 0 or should_stop():
                raise BudgetSpent(f"{what}: {type(e).__name__}: {e}") from e
            log.warning("%s failed (retrying for up to %.0f s more): %s", what, left, e)
            time.sleep(min(delay, left, MAX_SLEEP_S))
            delay *= 2


def within(budget_s: float) -> Callable[[Callable[[], T], str], T]:
    """`retrying` with a budget of `budget_s`, as a record sink takes it
    (`shared.state.itemlayout.Retry`)."""
    return lambda fn, what: retrying(fn, budget_s, what)
