"""The job store, the chunk ledger and the fair queue on a real Redis: leases and fencing,
commits and splits, requeues, round-robin dispatch, finalization, quotas and expiry."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from shared.results.records import InputSource, ItemRecord
from shared.settings import Settings
from shared.spec.job import parse_job_spec
from shared.state.chunks import Chunks, Lease, Segment
from shared.state.fairqueue import FairQueue
from shared.state.jobs import NewJob
from shared.state.jobschema import READY_TENANTS, WORKERS, RecordKeys, queued_key, ready_key
from shared.state.jobstore import JobStore
from shared.state.redisio import now_ms
from shared.status import ItemStatus, JobStatus
from shared.taskqueue import QUEUE, RUN_CHUNK, chunk_ranges, make_sender, pump


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(f"{redis_server}/7", decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def stores(r):
    return JobStore(r), Chunks(r), FairQueue(r, lease_s=30)


def _job(r, jobs: JobStore, chunks: Chunks, tenant="acme", n=10, size=4, state="ready"):
    job_id = uuid.uuid4().hex
    inputs = tuple(InputSource(name=f"{i}.png", key=f"k/{i}") for i in range(n))
    pipe = r.pipeline(transaction=True)
    jobs.create(NewJob(job_id, tenant, parse_job_spec({"model": "m"}), inputs=inputs), pipe)
    chunks.add(pipe, job_id, chunk_ranges(n, size), "planned")
    pipe.execute()
    if state == "ready":
        chunks.activate(job_id)
    return job_id


def _record(index: int, ok: bool = True) -> ItemRecord:
    return ItemRecord(index, ItemStatus.SUCCEEDED if ok else ItemStatus.FAILED, f"{index}.png",
                      error=None if ok else "broken")


def test_chunk_ranges_cover_every_item_once():
    assert chunk_ranges(130, 64) == [(0, 64), (64, 128), (128, 130)]
    ranges = chunk_ranges(100_000, 64)
    assert sum(b - a for a, b in ranges) == 100_000 and len(ranges) == 1563


def test_a_chunk_is_leased_to_one_worker_and_its_first_run_starts_the_job(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    assert jobs.get(job_id).status is JobStatus.QUEUED
    lease = chunks.acquire(job_id, 0, "w1", 30)
    assert isinstance(lease, Lease) and (lease.start, lease.stop, lease.attempts) == (0, 4, 1)
    assert chunks.acquire(job_id, 0, "w2", 30) == "leased"  # a duplicate delivery does nothing
    assert jobs.get(job_id).status is JobStatus.RUNNING
    assert r.lrange(ready_key("acme"), 0, -1) == [f"{job_id}:4", f"{job_id}:8"]


def test_a_lease_not_renewed_for_two_thirds_of_its_length_is_revoked_and_requeued(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    lease = chunks.acquire(job_id, 0, "w1", 30)
    assert not chunks.requeue(job_id, 0, "running", silent_ms=10_000)  # renewed just now
    r.pexpire(lease.key, 9_000)  # 21 s without a renewal
    assert chunks.requeue(job_id, 0, "running", silent_ms=10_000)
    assert not chunks.renew(lease.key, lease.token, 30)  # its holder learns it lost it
    assert f"{job_id}:0" in r.lrange(ready_key("acme"), 0, -1)


def test_only_the_lease_holder_records_and_commits(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    old = chunks.acquire(job_id, 0, "w1", 30)
    r.delete(old.key)  # its lease expired: the reconciler would requeue the chunk
    assert chunks.requeue(job_id, 0, "running")
    new = chunks.acquire(job_id, 0, "w2", 30)
    assert new.token > old.token and new.attempts == 2
    assert not jobs.record_item(old, _record(0))  # fenced
    assert not chunks.renew(old.key, old.token, 30)
    assert chunks.commit(old, 4) == -1
    assert jobs.record_item(new, _record(0))
    assert jobs.get(job_id).done == 1


def test_recording_an_item_twice_counts_it_once_and_moves_it_between_sets(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    lease = chunks.acquire(job_id, 0, "w1", 30)
    for _ in range(2):
        jobs.record_item(lease, _record(1, ok=False))
    assert (jobs.get(job_id).done, jobs.get(job_id).failed) == (0, 1)
    jobs.record_item(lease, _record(1))
    job = jobs.get(job_id)
    assert (job.done, job.failed, job.first_error) == (1, 0, "broken")
    assert int(r.get(queued_key("acme"))) == 9


def test_a_partial_commit_splits_the_chunk_and_the_rest_is_ready_first(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    lease = chunks.acquire(job_id, 0, "w1", 30)
    assert chunks.commit(lease, 2) == 1
    states = {c.start: (c.stop, c.state) for c in chunks.states(job_id)}
    assert states == {0: (2, "done"), 2: (4, "ready"), 4: (8, "ready"), 8: (10, "ready")}
    assert r.lrange(ready_key("acme"), 0, 0) == [f"{job_id}:2"]
    assert jobs.open_chunks(job_id) == 3


def test_the_last_commit_reports_the_phase_complete(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks, n=6, size=4)
    outcomes = []
    for start in (0, 4):
        lease = chunks.acquire(job_id, start, "w", 30)
        outcomes.append(chunks.commit(lease, lease.stop))
    assert outcomes == [1, 2] and jobs.open_chunks(job_id) == 0


def test_segments_and_their_counts_are_committed_together(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks, n=4, size=4)
    lease = chunks.acquire(job_id, 0, "w", 30)
    segment = Segment(0, 4, lease.token, "shard-key", "rows-key")
    assert chunks.commit(lease, 4, segment=segment, done=3, failed=1) == 2
    assert chunks.segments(job_id) == [segment]
    job = jobs.get(job_id)
    assert (job.done, job.failed) == (3, 1)


def test_a_sent_chunk_whose_task_vanished_is_requeued_after_the_grace(r, stores):
    jobs, chunks, fair = stores
    job_id = _job(r, jobs, chunks, n=4, size=4)
    assert fair.pop() == [(job_id, 0)]
    assert not chunks.requeue(job_id, 0, "sent", now_ms() - 60_000)  # sent just now
    assert chunks.requeue(job_id, 0, "sent", now_ms() + 1)
    assert r.lrange(ready_key("acme"), 0, -1) == [f"{job_id}:0"]


def test_chunks_are_sent_round_robin_across_tenants_within_the_window(r, stores):
    jobs, chunks, fair = stores
    big = _job(r, jobs, chunks, tenant="big", n=40, size=4)
    small = _job(r, jobs, chunks, tenant="small", n=4, size=4)
    r.zadd(WORKERS, {"w1": now_ms(), "w2": now_ms()})  # two live workers: a window of 4
    first = fair.pop()
    assert len(first) == 4 and (small, 0) in first[:2]  # the small job is not behind the big
    assert {job for job, _ in first} == {big, small}
    assert fair.pop() == []  # the window is full
    # small waits on big's ready list; big sees small's chunk sent and not yet finished
    assert fair.others_waiting("small") and fair.others_waiting("big")
    assert fair.depth() == 10 - 3


def test_a_finalizing_jobs_waiting_chunks_are_dropped_and_the_next_tenant_served(r, stores):
    jobs, chunks, fair = stores
    big = _job(r, jobs, chunks, tenant="big", n=40, size=4)
    small = _job(r, jobs, chunks, tenant="small", n=4, size=4)
    assert jobs.request_final(big, JobStatus.CANCELLED, "cancelled by the client")
    assert fair.pop() == [(small, 0)]
    assert r.llen(ready_key("big")) == 0 and fair.depth() == 0
    assert r.zrange(READY_TENANTS, 0, -1) == []


def test_pump_sends_one_task_per_chunk_with_ids_only(r, stores, redis_server):
    jobs, chunks, fair = stores
    job_id = _job(r, jobs, chunks, n=8, size=4)
    sender = make_sender(Settings(redis_url=f"{redis_server}/7"))
    assert pump(sender, fair) == 2
    messages = [json.loads(m) for m in r.lrange(QUEUE, 0, -1)]
    assert {m["headers"]["task"] for m in messages} == {RUN_CHUNK}
    assert sorted(m["headers"]["argsrepr"] for m in messages) == sorted(
        [repr([job_id, 0]), repr([job_id, 4])])


def test_finalizing_is_requested_once_and_the_job_becomes_final_after(r, stores):
    jobs, chunks, fair = stores
    job_id = _job(r, jobs, chunks)
    assert jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    assert not jobs.request_final(job_id, JobStatus.FAILED, "too late")
    job = jobs.get(job_id)
    assert job.status is JobStatus.QUEUED and job.finalizing
    assert chunks.acquire(job_id, 0, "w", 30) == "final"
    assert fair.pop() == []  # a finalizing job's chunks are dropped, not sent
    assert jobs.finish(job_id, JobStatus.CANCELLED, retention_s=60)
    job = jobs.get(job_id)
    assert job.status is JobStatus.CANCELLED and not job.finalizing
    assert job.error == "cancelled by the client"
    assert int(r.get(queued_key("acme"))) == 0  # its unrun items left the quota
    assert job_id not in jobs.active()


def test_an_expired_job_leaves_a_tombstone(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    jobs.request_final(job_id, JobStatus.CANCELLED)
    jobs.finish(job_id, JobStatus.CANCELLED, retention_s=1)
    assert jobs.expired(time.time()) == []
    assert jobs.expired(time.time() + 2) == [job_id]
    jobs.delete(job_id, "acme", tombstone_ttl_s=60)
    assert jobs.get(job_id) is None and jobs.tombstone(job_id) == "acme"
    assert not [k for k in r.keys(f"saliency:job:{job_id}*")]


def test_the_control_lease_is_held_by_one_task(r, stores):
    jobs, chunks, _ = stores
    job_id = _job(r, jobs, chunks)
    token = jobs.take_control(job_id, 30)
    assert token is not None and jobs.take_control(job_id, 30) is None
    jobs.release_control(job_id, token)
    assert not jobs.control_held(job_id) and r.get(RecordKeys(job_id).control) is None
