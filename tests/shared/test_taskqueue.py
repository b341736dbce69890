"""Splitting a job into chunk tasks, and enqueueing them on a real Redis."""

from __future__ import annotations

import json

import redis

from shared.settings import Settings
from shared.taskqueue import QUEUE, RUN_CHUNK, chunks, make_sender, send_chunks


def test_chunks_cover_every_item_once():
    assert chunks(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert chunks(64, 64) == [(0, 64)]
    assert chunks(0, 64) == [(0, 0)]  # an empty job still gets a task that finishes it
    ranges = chunks(100_000, 64)
    assert sum(stop - start for start, stop in ranges) == 100_000 and len(ranges) == 1563


def test_a_100k_item_job_is_enqueued_as_chunks(redis_server):
    url = f"{redis_server}/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    sender = make_sender(Settings(redis_url=url))
    assert send_chunks(sender, "j" * 32, 100_000, 64) == 1563
    assert client.llen(QUEUE) == 1563
    message = json.loads(client.lindex(QUEUE, 0))  # the last one sent
    assert message["headers"]["task"] == RUN_CHUNK
    assert message["headers"]["argsrepr"] == repr(["j" * 32, 99968, 100000])
    client.flushdb()
