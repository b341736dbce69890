"""One run of an attribution chunk: load inputs → engine → outputs, batch by batch
(`worker.jobs.batches` runs the batches and decides when to stop). The model thread only
attributes; outputs are written beside it (`worker.kinds.attribution.sinks`)."""

from __future__ import annotations

import time

from shared.errors import InputError
from shared.seeds import item_seed
from shared.spec.job import AttributionSpec
from shared.spec.targets import ClassTarget, LabelTarget
from shared.state.chunks import Lease
from shared.state.jobs import Job
from worker.jobs.batches import BatchRun, chunk_sources
from worker.jobs.context import WorkerContext
from worker.jobs.inputs import Loaded
from worker.jobs.leases import LeaseKeeper
from worker.jobs.metrics import BATCH_SECONDS, observe_gpu
from worker.jobs.models import job_model
from worker.jobs.refs import resolve_methods
from worker.jobs.runtime import RunResult
from worker.kinds.attribution.sinks import ItemSink, ShardSink


def _targets(spec: AttributionSpec, items: list[Loaded], sink) -> tuple[list[Loaded], list]:
    """Each item's target; an item asked for its own label but without one fails alone."""
    if not isinstance(spec.target, LabelTarget):
        return items, [spec.target] * len(items)
    keep, targets = [], []
    for item in items:
        if item.label is None:
            sink.fail(item, f'{item.source.name}: has no label (target "label")')
        else:
            keep.append(item)
            targets.append(ClassTarget(item.label))
    return keep, targets


def run_attribution(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
                    worker: str | None) -> tuple[RunResult | None, bool]:
    """Run the chunk's remaining items; returns what to commit (None: nothing, the job is
    being finalized) and whether the rest yielded to another tenant."""
    import torch

    spec = job.spec
    work: AttributionSpec = spec.work
    record, engine = job_model(ctx, job)
    model = record.spec
    side = model.preprocessing.input_size
    # Null layers become the model's default here, so that every output names its layer.
    methods = engine.resolve_layers(resolve_methods(ctx, job, model, work.methods),
                                    torch.zeros(1, 3, side, side))
    layout = ctx.layout(job)
    todo = layout.unfinished(lease.start, lease.stop)
    sink = (ShardSink if layout.at_commit else ItemSink)(ctx, job, lease, work, methods, model,
                                                        worker)
    run = BatchRun(ctx, job, lease, keeper, model, chunk_sources(ctx, job, lease), todo,
                   sink.fail)
    try:
        for loaded in run:
            good, targets = _targets(work, loaded, sink)
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
        if run.stop.upto is None:
            sink.abandon()
            return None, False
        return sink.finish(run.stop.upto), run.stop.to_back
    except BaseException:
        sink.abandon()
        raise
