"""A job's later phases: the chunks of a kind's next phase (an attribution job's audit, a
top-activations job's projections), added when every chunk of the one before is done."""

from __future__ import annotations

from shared.state.jobs import Job
from shared.state.jobschema import ChunkStatus
from shared.taskqueue import chunk_ranges
from worker.jobs.context import ControlContext


def start_phase(ctx: ControlContext, job: Job, phase: int, chunks: int,
                projections_due: int | None = None) -> None:
    """Move a job whose chunks are all done to its next `phase`, of `chunks` chunks of one
    item each (the phase's own work items), in one transaction with the ledger (its segments
    kept), and make them ready."""
    pipe = ctx.redis.pipeline(transaction=True)
    ctx.chunks.reset(job.id, keep_segments=True, pipe=pipe)
    ctx.chunks.add(pipe, job.id, chunk_ranges(chunks, 1), ChunkStatus.PLANNED)
    ctx.jobs.enter_phase(pipe, job.id, phase, projections_due)
    pipe.execute()
    ctx.chunks.activate(job.id)
