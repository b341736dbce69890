"""Phase 0 of a `top_activations` job: one run of a chunk scans its inputs.

A chunk's partial top-k is one file written when the run commits, so a run is all or
nothing: a run that dies is redone whole, and its items' records (written at the commit)
never claim a scan whose partial was lost.
"""

from __future__ import annotations

from shared.results.records import ItemRecord
from shared.spec.top_activations import TopActivationsSpec
from shared.state.chunks import Lease, Segment
from shared.state.jobs import Job
from shared.status import ItemStatus
from shared.storage.keys import JobKeys
from worker.jobs.batches import BatchRun, chunk_sources
from worker.jobs.context import WorkerContext
from worker.jobs.inputs import Loaded
from worker.jobs.leases import LeaseKeeper
from worker.jobs.models import job_model
from worker.jobs.retry import retrying, within
from worker.jobs.runtime import RunResult


def _record(item: Loaded, status: ItemStatus, worker: str | None,
            error: str | None = None) -> ItemRecord:
    return ItemRecord(index=item.index, status=status, input=item.source.name,
                      id=item.source.id, error=error, worker=worker, label=item.label)


def run_scan(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
             worker: str | None) -> tuple[RunResult | None, bool]:
    """Scan the chunk's inputs; commit the partial top-k and the items' records."""
    import torch

    from worker.kinds.top_activations.feature_maps import scan_batch

    spec = job.spec
    work: TopActivationsSpec = spec.work
    record, engine = job_model(ctx, job)
    if work.channels == "all" and record.layer_shapes:
        work.check_shapes(record.layer_shapes, ctx.settings.max_projections)
    records: dict[int, ItemRecord] = {}

    def fail(item: Loaded, message: str) -> None:
        records[item.index] = _record(item, ItemStatus.FAILED, worker, message)

    run = BatchRun(ctx, job, lease, keeper, record.spec, chunk_sources(ctx, job, lease),
                   list(range(lease.start, lease.stop)), fail)
    partial = None
    for loaded in run:
        partial = scan_batch(engine, torch.stack([item.x for item in loaded]),
                             [item.index for item in loaded], work.layer, work.channels, work.k,
                             partial)
        for item in loaded:
            records[item.index] = _record(item, ItemStatus.SUCCEEDED, worker)
    if run.stop.upto is None:
        return None, False
    upto = run.stop.upto
    keys = JobKeys(job.tenant, job.id)
    budget = ctx.settings.retry_budget_s
    partial_key = None
    if partial is not None:
        partial_key = keys.partial("scan", lease.start, lease.token)
        data = partial.to_bytes()
        retrying(lambda: ctx.storage.put(partial_key, data), budget, "writing a partial top-k")
    sink = ctx.layout(job).sink(lease, within(budget))
    for _, rec in sorted(records.items()):
        sink.add(rec)
    recorded = sink.finish(upto)
    segment = Segment(lease.start, upto, lease.token, None, recorded.rows, None, partial_key)
    return (RunResult(upto, segment, recorded.done, recorded.failed, recorded.first_error),
            run.stop.to_back)
