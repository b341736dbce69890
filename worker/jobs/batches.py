"""The batches of one run of a chunk, as every kind of job runs them.

Inputs of the next batch are read and preprocessed by a loader thread while the model works
on this one. Between batches the run stops, at a batch boundary, when the job is being
finalized (cancelled, failed), when its lease was taken over, when its time budget (half the
task time limit) is spent, or — after at least one batch — when another tenant has work
waiting (fair share: the rest of the chunk goes back to the queue, at the back of the line).
An item in flight each time its worker was lost fails alone (`JobStore.charge_lost_run`),
and so does an input that cannot be read; the caller gets the rest, loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from shared.results.records import InputSource
from shared.spec.model import ModelSpec
from shared.state.chunks import Fenced, Lease
from shared.state.jobs import Job
from worker.jobs.context import WorkerContext
from worker.jobs.inputs import Loaded, RunParts, load_input
from worker.jobs.leases import LeaseKeeper
from worker.jobs.retry import retrying


@dataclass(frozen=True)
class Stop:
    """Where a run ended: `upto` is where the chunk continues (None: the job is being
    finalized and nothing more is wanted); `to_back` if it yielded to another tenant."""

    upto: int | None
    to_back: bool = False


def chunk_sources(ctx: WorkerContext, job: Job, lease: Lease) -> dict[int, InputSource]:
    """The inputs of a leased chunk, by item index."""
    inputs = ctx.layout(job).inputs(lease.start, lease.stop)
    return dict(zip(range(lease.start, lease.stop), inputs, strict=True))


class BatchRun:
    """Iterate over the loaded batches of `todo`; `stop` says where the run ended."""

    def __init__(self, ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
                 model: ModelSpec, sources: dict[int, InputSource], todo: list[int],
                 fail: Callable[[Loaded, str], None]) -> None:
        self.ctx, self.job, self.lease, self.keeper = ctx, job, lease, keeper
        self.model, self.sources, self.todo, self.fail = model, sources, todo, fail
        self.parts = RunParts(ctx, job, model, {i: sources[i] for i in todo})
        self.stop = Stop(lease.stop)
        self._next: Future | None = None

    def _load(self, batch: list[int]) -> Future:
        ctx, budget = self.ctx, self.ctx.settings.retry_budget_s
        return ctx.loader.submit(lambda: [retrying(
            lambda i=i: load_input(ctx, self.job.tenant, self.model, i, self.sources[i],
                                   self.parts),
            budget, f"reading input {i}", self.keeper.lost.is_set) for i in batch])

    def _batches(self) -> tuple[list[list[int]], bool]:
        """The run's batches and whether to read ahead. An item in flight in
        `SALIENCY_MAX_ATTEMPTS` lost runs fails here, unread; while any item of the chunk was
        in flight in one, items go one at a time, unread ahead, so that a loss is charged
        to the item that caused it alone."""
        jobs, job_id, start = self.ctx.jobs, self.job.id, self.lease.start
        jobs.charge_lost_run(job_id, start)
        counts, limit = jobs.losses(job_id, self.todo), self.ctx.settings.max_attempts
        keep = []
        for index in self.todo:
            if counts.get(index, 0) >= limit:
                self.fail(Loaded(index, self.sources[index]),
                          f"gave up after {limit} attempts (the worker was lost each time)")
            else:
                keep.append(index)
        size = 1 if counts else self.ctx.settings.batch_size
        return [keep[i:i + size] for i in range(0, len(keep), size)], not counts

    def __iter__(self) -> Iterator[list[Loaded]]:
        deadline = time.monotonic() + self.ctx.settings.task_time_limit_s / 2
        batches, read_ahead = self._batches()
        try:
            for b, batch in enumerate(batches):
                if self.keeper.lost.is_set():
                    raise Fenced(f"job {self.job.id} chunk {self.lease.start}: lease taken over")
                if self.ctx.jobs.stopping(self.job.id):
                    self.stop = Stop(None)
                    break
                if b > 0 and time.monotonic() > deadline:  # a run always does one batch
                    self.stop = Stop(batch[0])
                    break
                if b > 0 and self.ctx.fair.others_waiting(self.job.tenant):
                    self.stop = Stop(batch[0], to_back=True)
                    break
                self.ctx.jobs.bump_attempts(self.job.id, batch)
                ahead = batches[b + 1] if read_ahead and b + 1 < len(batches) else []
                self.ctx.jobs.in_flight(self.job.id, self.lease.start, batch + ahead)
                loading = self._next or self._load(batch)
                self._next = self._load(ahead) if ahead else None
                good = []
                for item in loading.result():
                    if item.error is None:
                        good.append(item)
                    else:
                        self.fail(item, item.error)
                if good:
                    yield good
            # A run that dies before here leaves its window to be charged.
            self.ctx.jobs.clear_in_flight(self.job.id, self.lease.start)
        finally:
            if self._next is not None:
                self._next.cancel()
