"""The reconciler's decisions, one pass at a time, on a real Redis and without a worker: what
it sends for a job with no planner or finalizer, which chunks it takes back, and when a job
that makes no progress is fenced and then failed. Time is moved by writing the clocks the
reconciler reads (a lease's expiry, a job's last progress), never by sleeping."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.results.records import InputSource
from shared.settings import Settings
from shared.spec.job import job_spec_from_json, parse_job_spec
from shared.state.jobs import NewJob
from shared.state.jobschema import ChunkStatus, RecordKeys
from shared.state.jobschema import JobField as F
from shared.state.redisio import now_ms
from shared.status import JobStatus
from shared.taskqueue import CONTROL_QUEUE, NEXT_PHASE, PLAN, chunk_ranges
from worker.jobs.context import ControlContext
from worker.jobs.reconciler import reconcile

LEASE_S, STALL_S, MAX_ATTEMPTS = 30, 60, 2


@pytest.fixture
def ctx(redis_server, tmp_path):
    settings = Settings(redis_url=f"{redis_server}/5", storage_url=(tmp_path / "s").as_uri(),
                        data_dir=str(tmp_path / "d"), builtin_models=False, lease_s=LEASE_S,
                        stall_s=STALL_S, max_attempts=MAX_ATTEMPTS)
    ctx = ControlContext.create(settings)
    ctx.redis.flushdb()
    yield ctx
    ctx.redis.flushdb()


def _upload_job(ctx: ControlContext, n: int = 8, size: int = 4) -> str:
    """A queued upload job of `n` inputs whose chunks are ready (its model validated)."""
    job_id = uuid.uuid4().hex
    inputs = tuple(InputSource(name=f"{i}.png", key=f"k/{i}") for i in range(n))
    pipe = ctx.redis.pipeline(transaction=True)
    ctx.jobs.create(NewJob(job_id, "acme", parse_job_spec({"model": "m"}), inputs=inputs), pipe)
    ctx.chunks.add(pipe, job_id, chunk_ranges(n, size), ChunkStatus.PLANNED)
    pipe.execute()
    ctx.chunks.activate(job_id)
    return job_id


def _dataset_job(ctx: ControlContext) -> str:
    """A data-set job as the API stores it: planning, no chunks yet."""
    job_id = uuid.uuid4().hex
    spec = job_spec_from_json({"kind": "attribution", "model": "m", "methods": ["gradient"],
                               "dataset": {"prefix": "file:///data/set/"}})
    pipe = ctx.redis.pipeline(transaction=True)
    ctx.jobs.create(NewJob(job_id, "acme", spec), pipe)
    pipe.execute()
    return job_id


def _running(ctx: ControlContext, job_id: str):
    """Chunk 0 taken by a worker (wherever the fair queue had got it to)."""
    ctx.fair.pop()
    lease = ctx.chunks.acquire(job_id, 0, "w", LEASE_S)
    assert not isinstance(lease, str), lease
    return lease


def _control_sent(ctx: ControlContext) -> list[tuple[str, list]]:
    """The control tasks in the workers' queue: (task name, args), oldest first."""
    messages = [json.loads(m) for m in reversed(ctx.redis.lrange(CONTROL_QUEUE, 0, -1))]
    return [(m["headers"]["task"], json.loads(m["headers"]["argsrepr"].replace("'", '"')))
            for m in messages]


def test_a_planning_job_without_a_planner_gets_one_once_per_lease(ctx):
    job_id = _dataset_job(ctx)
    assert reconcile(ctx).control_sent == 1
    assert reconcile(ctx).control_sent == 0  # sent within the lease: not again
    assert _control_sent(ctx) == [(PLAN, [job_id])]


def test_a_job_whose_control_lease_is_held_is_left_to_its_holder(ctx):
    job_id = _dataset_job(ctx)
    assert ctx.jobs.take_control(job_id, LEASE_S) is not None
    assert reconcile(ctx).control_sent == 0 and _control_sent(ctx) == []


def test_a_finalizing_job_without_a_finalizer_gets_one(ctx):
    job_id = _upload_job(ctx)
    assert ctx.jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    assert reconcile(ctx).control_sent == 1
    assert _control_sent(ctx) == [(NEXT_PHASE, [job_id])]


def test_a_job_whose_chunks_are_all_done_gets_its_next_phase(ctx):
    job_id = _upload_job(ctx, n=4, size=4)
    lease = ctx.chunks.acquire(job_id, 0, "w", LEASE_S)
    assert ctx.chunks.commit(lease, lease.stop) == 2  # the last chunk: its worker then died
    assert reconcile(ctx).control_sent == 1
    assert _control_sent(ctx) == [(NEXT_PHASE, [job_id])]


def test_a_running_chunk_is_taken_back_only_once_its_lease_went_unrenewed(ctx):
    job_id = _upload_job(ctx)
    lease = ctx.chunks.acquire(job_id, 0, "w", LEASE_S)
    assert reconcile(ctx).requeued_lost == 0  # renewed just now
    ctx.redis.pexpire(lease.key, LEASE_S * 1000 // 3 - 1000)  # two renewals missed
    assert reconcile(ctx).requeued_lost == 1
    assert {c.start: c.state for c in ctx.chunks.states(job_id)}[0] in (
        ChunkStatus.READY, ChunkStatus.SENT)  # ready, and sent again by the pass's pump
    assert not ctx.chunks.renew(lease.key, lease.token, LEASE_S)  # its holder is fenced


def test_a_sent_chunk_whose_task_vanished_is_sent_again_after_the_grace(ctx):
    job_id = _upload_job(ctx, n=4, size=4)
    assert ctx.fair.pop() == [(job_id, 0)]  # taken for sending; the message was then lost
    assert reconcile(ctx).requeued_vanished == 0  # within the grace
    ctx.redis.hset(RecordKeys(job_id).csent, "0", now_ms() - 2 * LEASE_S * 1000 - 1000)
    assert reconcile(ctx).requeued_vanished == 1
    assert {c.start: c.state for c in ctx.chunks.states(job_id)}[0] in (
        ChunkStatus.READY, ChunkStatus.SENT)  # ready, and sent again by the pass's pump


def test_a_job_without_progress_has_its_running_chunks_fenced_then_fails(ctx):
    job_id = _upload_job(ctx)
    lease = ctx.chunks.acquire(job_id, 0, "w", LEASE_S)
    hash_key = RecordKeys(job_id).hash

    def stall() -> None:
        ctx.redis.hset(hash_key, F.PROGRESS_MS, now_ms() - STALL_S * 1000 - 1000)

    assert reconcile(ctx).stalled == 0  # progress just now
    for _ in range(MAX_ATTEMPTS):
        stall()
        assert reconcile(ctx).stalled == 1
        assert not ctx.chunks.renew(lease.key, lease.token, LEASE_S)  # fenced
        assert not ctx.jobs.get(job_id).finalizing
        assert ctx.chunks.requeue(job_id, 0, ChunkStatus.RUNNING)  # as the next pass would
        lease = _running(ctx, job_id)  # taken over, and stalled again
    stall()
    assert reconcile(ctx).stalled == 1
    job = ctx.jobs.get(job_id)
    assert job.finalizing and job.final_status is JobStatus.FAILED
    assert job.error == f"no progress for {STALL_S} s, {MAX_ATTEMPTS} times"
    assert (NEXT_PHASE, [job_id]) in _control_sent(ctx)
