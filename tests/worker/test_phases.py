"""A job moving to its next phase, on a real Redis and without a worker: the phase's chunks
replace the ledger's in one step, the segments the first phase committed are kept, and the
phase's own progress is counted."""

from __future__ import annotations

import pytest

from shared.results.records import InputSource
from shared.settings import Settings
from shared.spec.job import parse_job_spec
from shared.state.chunks import Segment
from shared.state.jobs import NewJob
from shared.state.jobschema import ChunkStatus, ready_key
from shared.taskqueue import chunk_ranges
from worker.jobs.context import ControlContext
from worker.jobs.phases import start_phase


@pytest.fixture
def ctx(redis_server, tmp_path):
    settings = Settings(redis_url=f"{redis_server}/13", storage_url=(tmp_path / "s").as_uri(),
                        data_dir=str(tmp_path / "d"), builtin_models=False)
    ctx = ControlContext.create(settings)
    ctx.redis.flushdb()
    yield ctx
    ctx.redis.flushdb()


def _run_first_phase(ctx: ControlContext) -> tuple[str, list[Segment]]:
    """A top-activations job of 4 inputs whose two chunks of 2 have committed their scan."""
    job_id = "j" * 32
    spec = parse_job_spec({"kind": "top_activations", "model": "m", "layer": "layer1",
                           "channels": "all"})
    inputs = tuple(InputSource(name=f"{i}.png", key=f"k/{i}") for i in range(4))
    pipe = ctx.redis.pipeline(transaction=True)
    ctx.jobs.create(NewJob(job_id, "acme", spec, inputs=inputs), pipe)
    ctx.chunks.add(pipe, job_id, chunk_ranges(4, 2), ChunkStatus.PLANNED)
    pipe.execute()
    ctx.chunks.activate(job_id)
    segments, outcomes = [], []
    for start in (0, 2):
        lease = ctx.chunks.acquire(job_id, start, "w", 30)
        segments.append(Segment(start, start + 2, lease.token, None, None,
                                partial=f"scan-{start}"))
        outcomes.append(ctx.chunks.commit(lease, lease.stop, segment=segments[-1]))
    assert outcomes == [1, 2]  # the phase is complete
    return job_id, segments


def test_the_next_phase_replaces_the_chunks_and_keeps_the_segments(ctx):
    job_id, segments = _run_first_phase(ctx)
    start_phase(ctx, ctx.jobs.get(job_id), 1, 3, projections_due=27)
    job = ctx.jobs.get(job_id)
    assert job.phase == 1 and ctx.jobs.open_chunks(job_id) == 3
    assert job.to_json()["progress"]["projections"] == {"done": 0, "due": 27}
    assert [(c.start, c.stop, c.state) for c in ctx.chunks.states(job_id)] == [
        (0, 1, "ready"), (1, 2, "ready"), (2, 3, "ready")]
    assert ctx.chunks.segments(job_id) == segments
    assert ctx.redis.lrange(ready_key("acme"), 0, -1) == [f"{job_id}:{s}" for s in range(3)]


def test_the_last_chunk_of_the_next_phase_completes_it(ctx):
    job_id, _ = _run_first_phase(ctx)
    start_phase(ctx, ctx.jobs.get(job_id), 1, 2)
    outcomes = []
    for start in (0, 1):
        lease = ctx.chunks.acquire(job_id, start, "w", 30)
        assert (lease.start, lease.stop) == (start, start + 1)
        outcomes.append(ctx.chunks.commit(lease, lease.stop))
    assert outcomes == [1, 2] and ctx.jobs.open_chunks(job_id) == 0
