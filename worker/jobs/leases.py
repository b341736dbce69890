"""Keeping a lease alive while work runs: a heartbeat thread renews it every third of its
length and raises a flag the moment it was taken over, so the work stops without publishing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from shared.state.redisio import TRANSIENT

log = logging.getLogger(__name__)


class LeaseKeeper:
    """`with LeaseKeeper(renew, lease_s) as keeper:` renews until the block ends.

    `renew()` returns False once the lease is someone else's; `keeper.lost` is then set.
    A Redis error while renewing is not a loss: the lease may well survive a short outage
    (its expiry is stored with it), and the next renewal tells.
    """

    def __init__(self, renew: Callable[[], bool], lease_s: int,
                 on_beat: Callable[[], None] | None = None) -> None:
        self._renew = renew
        self._every = max(0.5, lease_s / 3)
        self._on_beat = on_beat
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._renew():
                    log.warning("lease taken over; this run stops without publishing")
                    self.lost.set()
                    return
                if self._on_beat is not None:
                    self._on_beat()
            except TRANSIENT as e:
                log.warning("lease renewal failed (will retry): %s", e)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
