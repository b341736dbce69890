"""One run of an attribution chunk: load inputs → engine → outputs, batch by batch.

The model thread only attributes. Inputs of the next batch are read and preprocessed by a
loader thread while the model runs. Between batches the run stops, at a batch boundary,
when the job is being finalized (cancelled, failed), when its lease was taken over, when its
time budget is spent, or when another tenant has work waiting (fair share: the rest of the
chunk goes back to the queue). A bad input fails its item alone; an item tried too often (it
killed its worker each time) fails alone too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from shared.chunks import Lease
from shared.errors import InputError
from shared.jobs import Job
from shared.records import InputSource
from shared.seeds import item_seed
from shared.specs import AttributionSpec, job_spec_from_json
from shared.targets import LabelTarget
from worker.attribution.sinks import Fenced, ItemSink, RunResult, ShardSink
from worker.context import WorkerContext
from worker.engines import engine_for
from worker.inputs import Loaded, load_input
from worker.leases import LeaseKeeper
from worker.metrics import BATCH_SECONDS, observe_gpu
from worker.plans import planned_inputs
from worker.refs import resolve_methods
from worker.retry import retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stop:
    """Why a run ended early: `upto` is where the chunk continues; `to_back` if it yielded."""

    upto: int | None
    to_back: bool = False


def _batches(todo: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(todo), size):
        yield todo[start:start + size]


def _sources(ctx: WorkerContext, job: Job, lease: Lease) -> dict[int, InputSource]:
    if job.layout == "items":
        inputs = ctx.jobs.input_range(job.id, lease.start, lease.stop)
    else:
        inputs = planned_inputs(ctx, job, lease.start, lease.stop)
    return dict(zip(range(lease.start, lease.stop), inputs, strict=True))


def _within_attempts(ctx: WorkerContext, job: Job, batch: list[int], sink,
                     sources: dict[int, InputSource]) -> list[int]:
    """Count an attempt at each item; one tried too often (it kills workers) fails alone."""
    limit = ctx.settings.max_attempts
    keep = []
    for index, n in zip(batch, ctx.jobs.bump_attempts(job.id, batch), strict=True):
        if n <= limit:
            keep.append(index)
        else:
            sink.fail(Loaded(index, sources[index]),
                      f"gave up after {limit} attempts (the worker was lost each time)")
    return keep


def _targets(spec: AttributionSpec, items: list[Loaded], sink) -> tuple[list[Loaded], list]:
    """Each item's target; an item asked for its own label but without one fails alone."""
    from shared.targets import ClassTarget

    if not isinstance(spec.target, LabelTarget):
        return items, [spec.target] * len(items)
    keep, targets = [], []
    for item in items:
        if item.label is None:
            sink.fail(item, f"{item.source.name}: has no label (target \"label\")")
        else:
            keep.append(item)
            targets.append(ClassTarget(item.label))
    return keep, targets


def run_attribution(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
                    worker: str | None) -> tuple[RunResult | None, bool]:
    """Run the chunk's remaining items; returns what to commit (None: nothing, the job is
    being finalized) and whether the rest yielded to another tenant."""
    import torch

    spec = job_spec_from_json(job.spec)
    work: AttributionSpec = spec.work
    record = ctx.models.get(job.tenant, spec.model)
    if record is None:
        raise InputError(f"model {spec.model!r} is no longer registered")
    engine = engine_for(ctx, job.tenant, record)
    model = record.spec
    methods = resolve_methods(ctx, job, model, work.methods)
    sources = _sources(ctx, job, lease)
    indices = list(range(lease.start, lease.stop))
    if job.layout == "items":
        todo = ctx.jobs.unfinished(job.id, indices)
        sink = ItemSink(ctx, job, lease, work, methods, model, worker)
    else:
        todo = indices
        sink = ShardSink(ctx, job, lease, work, methods, model, worker)
    budget = ctx.settings.retry_budget_s
    deadline = time.monotonic() + ctx.settings.task_time_limit_s / 2
    stop = Stop(lease.stop)
    batches = list(_batches(todo, ctx.settings.batch_size))
    next_load: Future | None = None

    def load(batch: list[int]) -> Future:
        return ctx.loader.submit(lambda: [retrying(
            lambda i=i: load_input(ctx, job.tenant, model, i, sources[i]), budget,
            f"reading input {i}", keeper.lost.is_set) for i in batch])

    try:
        for b, batch in enumerate(batches):
            if keeper.lost.is_set():
                raise_fenced(job, lease)
            if ctx.jobs.stopping(job.id):
                stop = Stop(None)
                break
            if b > 0 and time.monotonic() > deadline:  # a run always does one batch
                stop = Stop(batch[0])
                break
            if b > 0 and ctx.fair.others_waiting(job.tenant):
                stop = Stop(batch[0], to_back=True)
                break
            runnable = _within_attempts(ctx, job, batch, sink, sources)
            loading = next_load or load(runnable)
            next_load = load(batches[b + 1]) if b + 1 < len(batches) else None
            wanted = set(runnable)
            loaded = [item for item in loading.result() if item.index in wanted]
            good = []
            for item in loaded:
                if item.error is None:
                    good.append(item)
                else:
                    sink.fail(item, item.error)
            good, targets = _targets(work, good, sink)
            if not good:
                continue
            started = time.perf_counter()
            seeds = [item_seed(spec.seed, item.index) for item in good]
            try:
                result = engine.attribute(torch.stack([item.x for item in good]), methods,
                                          targets, seeds=seeds)
            except InputError as e:
                for item in good:
                    sink.fail(item, e.message)
                continue
            BATCH_SECONDS.observe(time.perf_counter() - started)
            observe_gpu()
            for item, image in zip(good, result.images, strict=True):
                sink.add(item, image, result.coverage)
        if stop.upto is None:
            sink.abandon()
            return None, False
        return sink.finish(stop.upto), stop.to_back
    except BaseException:
        if next_load is not None:
            next_load.cancel()
        sink.abandon()
        raise


def raise_fenced(job: Job, lease: Lease) -> None:
    raise Fenced(f"job {job.id} chunk {lease.start}: lease taken over")
