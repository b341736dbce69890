"""A run's lease kept alive on a real Redis: renewed while the run holds it, and lost (the
run told to stop without publishing) the moment the reconciler takes it away."""

from __future__ import annotations

import uuid

import redis
from waiting import wait_until

from shared.results.records import InputSource
from shared.spec.job import parse_job_spec
from shared.state.chunks import Chunks
from shared.state.jobs import NewJob
from shared.state.jobstore import JobStore
from shared.taskqueue import chunk_ranges
from worker.jobs.leases import LeaseKeeper

LEASE_S = 1  # renewed every half second (the keeper's shortest period)


def _leased_chunk(client: redis.Redis):
    jobs, chunks = JobStore(client), Chunks(client)
    job_id = uuid.uuid4().hex
    inputs = tuple(InputSource(name=f"{i}.png", key=f"k/{i}") for i in range(4))
    pipe = client.pipeline(transaction=True)
    jobs.create(NewJob(job_id, "acme", parse_job_spec({"model": "m"}), inputs=inputs), pipe)
    chunks.add(pipe, job_id, chunk_ranges(4, 4), "planned")
    pipe.execute()
    chunks.activate(job_id)
    return chunks, chunks.acquire(job_id, 0, "w", LEASE_S)


def test_a_kept_lease_outlives_its_length_and_a_revoked_one_is_lost(redis_server):
    client = redis.Redis.from_url(f"{redis_server}/4", decode_responses=True)
    client.flushdb()
    chunks, lease = _leased_chunk(client)
    beats = []

    def renew() -> bool:
        return chunks.renew(lease.key, lease.token, LEASE_S)

    with LeaseKeeper(renew, LEASE_S, on_beat=lambda: beats.append(1)) as keeper:
        wait_until("three renewals", lambda: len(beats) >= 3, timeout=30)  # past its 1 s
        assert client.get(lease.key) == str(lease.token) and not keeper.lost.is_set()
        chunks.revoke(lease.job_id, lease.start)  # the reconciler found the job stalled
        wait_until("the keeper told of the loss", keeper.lost.is_set, timeout=30)
    assert client.get(lease.key) is None  # and it did not take the lease back
    client.flushdb()
