"""Phase 0 of a `top_activations` job: one run of a chunk scans its inputs.

A chunk's partial top-k is one file written when the run commits, so a run is all or
nothing: a run that dies is redone whole, and its items' records (written at the commit)
never claim a scan whose partial was lost.
"""

from __future__ import annotations

import json

from shared.chunks import Lease, Segment
from shared.jobs import Job
from shared.keys import JobKeys
from shared.records import ItemRecord
from shared.status import ItemStatus
from shared.top_activations_spec import TopActivationsSpec
from worker.attribution.sinks import RunResult
from worker.batches import BatchRun, Fenced, chunk_sources
from worker.context import WorkerContext
from worker.engines import job_model
from worker.inputs import Loaded
from worker.leases import LeaseKeeper
from worker.retry import retrying


def _record(item: Loaded, status: ItemStatus, worker: str | None,
            error: str | None = None) -> ItemRecord:
    return ItemRecord(index=item.index, status=status, input=item.source.name,
                      id=item.source.id, error=error, worker=worker, label=item.label)


def run_scan(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
             worker: str | None) -> tuple[RunResult | None, bool]:
    """Scan the chunk's inputs; commit the partial top-k and the items' records."""
    import torch

    from worker.feature_maps import scan_batch

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
    done = [r for i, r in sorted(records.items()) if i < upto]
    rows_key = None
    if job.layout == "items":
        for rec in done:
            ok = retrying(lambda rec=rec: ctx.jobs.record_item(lease, rec), budget,
                          f"recording item {rec.index}")
            if not ok:
                raise Fenced(f"job {job.id} chunk {lease.start}: lease taken over")
        counts = (0, 0)
    else:
        rows_key = keys.rows(lease.start, lease.token)
        rows = b"".join(json.dumps(r.to_json()).encode() + b"\n" for r in done)
        retrying(lambda: ctx.storage.put(rows_key, rows, "application/x-ndjson"), budget,
                 "writing a rows file")
        counts = (sum(r.ok for r in done), sum(not r.ok for r in done))
    first_error = next((r.error for r in done if not r.ok), None)
    segment = Segment(lease.start, upto, lease.token, None, rows_key, None, partial_key)
    return RunResult(upto, segment, *counts, first_error), run.stop.to_back
