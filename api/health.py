"""Probes: alive (`/healthz`, touches nothing) and ready (`/readyz`: Redis and storage answer,
else `503` naming the backend).

`/readyz` answers within `READY_DEADLINE_S` whatever the backends do, holding at most one of
the API's threads meanwhile: the checks run on a thread of their own, one round at a time,
and a round's result serves `READY_CACHE_S`. The request that starts a round waits for it
until it is `READY_DEADLINE_S` old; others answer the last result meanwhile, and `503` once
the round is older. A stalled backend holds the probe's thread, never the API's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, Flask, current_app, jsonify

from api.errors import error_response
from shared.state.redisio import TRANSIENT
from shared.storage.interface import StorageError

bp = Blueprint("health", __name__)
READY_DEADLINE_S = 2.0
READY_CACHE_S = 5.0
Check = tuple[str, Callable[[], None], tuple[type[BaseException], ...]]  # name, call, failures


class Probe:
    """Checks run in the background, in order: `problem()` is None while each answers, else
    `"<name>: <what is wrong>"` for the first that does not."""

    def __init__(self, checks: tuple[Check, ...], deadline_s: float = READY_DEADLINE_S,
                 cache_s: float = READY_CACHE_S) -> None:
        self.checks, self.deadline_s, self.cache_s = checks, deadline_s, cache_s
        self._lock = threading.Lock()
        self._result: tuple[float, str | None] | None = None  # (when, problem)
        self._running: tuple[float, threading.Event] | None = None  # (since, done)
        self._checking = checks[0][0]  # the name of the check the running round is at

    def problem(self) -> str | None:
        """The last round's result, starting a round when it is older than `cache_s`."""
        with self._lock:
            now = time.monotonic()
            starts = self._running is None and (
                self._result is None or now - self._result[0] >= self.cache_s)
            if starts:
                self._running = (now, threading.Event())
                threading.Thread(target=self._run, args=(self._running[1],), daemon=True,
                                 name="readiness").start()
            running, last = self._running, self._result
        if running is None:
            return last[1]  # recent enough
        since, done = running
        if not starts and last is not None and now - since < self.deadline_s:
            return last[1]  # the request that started the round is the one that waits
        if done.wait(max(0.0, since + self.deadline_s - time.monotonic())):
            with self._lock:
                return self._result[1]
        return f"{self._checking}: no answer within {self.deadline_s:g} s"

    def _run(self, done: threading.Event) -> None:
        problem: str | None = "the check failed unexpectedly; see the API's log"
        try:
            for name, check, failures in self.checks:
                self._checking = name
                try:
                    check()
                except failures as e:
                    problem = f"{name}: {e}"
                    return
            problem = None
        finally:  # an unexpected error is logged by the thread, and the next round runs again
            with self._lock:
                self._result, self._running = (time.monotonic(), problem), None
            done.set()


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    problem = current_app.extensions["readiness"].problem()
    if problem is not None:
        return error_response(503, "unavailable", problem)
    return jsonify({"status": "ready"})


def init_app(app: Flask) -> None:
    svc = app.extensions["saliency"]
    app.extensions["readiness"] = Probe((("redis", svc.redis.ping, TRANSIENT),
                                         ("storage", svc.storage.check, (StorageError,))))
    app.register_blueprint(bp)
