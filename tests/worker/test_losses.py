"""The in-flight window of a chunk against a real Redis: a run that dies leaves its window,
and the next run charges a loss to exactly those items."""

from __future__ import annotations

import redis

from worker.losses import LostItems


def _lost(redis_server: str, db: int) -> LostItems:
    client = redis.Redis.from_url(f"{redis_server}/{db}", decode_responses=True)
    client.flushdb()
    return LostItems(client, "job1", 8)


def test_a_run_that_ends_leaves_nothing_to_charge(redis_server):
    lost = _lost(redis_server, 11)
    lost.in_flight([8, 9, 10, 11])
    lost.clear()
    assert lost.charge_last_run() == []
    assert lost.losses(list(range(8, 16))) == {}


def test_a_run_that_dies_charges_only_its_window_once(redis_server):
    lost = _lost(redis_server, 12)
    lost.in_flight([8, 9])
    lost.in_flight([10, 11, 12])  # the next batch started: the window moved on
    assert lost.charge_last_run() == [10, 11, 12]
    assert lost.charge_last_run() == []  # charged once, by the first run to look
    lost.in_flight([12])
    lost.charge_last_run()
    assert lost.losses(list(range(8, 16))) == {10: 1, 11: 1, 12: 2}


def test_windows_of_other_chunks_are_their_own(redis_server):
    lost = _lost(redis_server, 13)
    other = LostItems(lost.redis, "job1", 16)
    other.in_flight([16, 17])
    assert lost.charge_last_run() == []
    assert other.charge_last_run() == [16, 17]
