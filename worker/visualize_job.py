"""`visualize` jobs: optimization-based visualization (`worker.visualize`) as chunks.

A chunk is one batch of the job's items (objective × start), optimized together on one
worker: the state is the image. Every `snapshot_every` steps (or every 16) the run shows its
progress — the items' snapshots and curves so far, and `progress.done` in steps — and is
checked for cancellation. When its time budget is spent it saves a checkpoint (the image or
its Fourier coefficients, Adam's state, the random generators) and hands the chunk back; the
next run continues from the checkpoint exactly as the first would have. The finalizer writes
the report (every item's objective curve and its figures, `shared.curves`) and the results
file (visualize's own columns, `shared.results.VISUALIZE_SCHEMA`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from shared.chunks import Lease
from shared.curves import CurveSummary, summarize
from shared.jobs import Job
from shared.keys import JobKeys
from shared.modelspec import ModelSpec
from shared.records import ItemRecord, OutputRecord
from shared.reports import artifact_ref
from shared.results import VISUALIZE_SCHEMA, visualize_row, write_rows
from shared.status import ItemStatus
from shared.visualize_spec import VisualizeItem, VisualizeSpec, minimizes
from worker.attribution.sinks import RunResult
from worker.batches import Fenced
from worker.context import WorkerContext
from worker.engines import job_model
from worker.finalizing import REPORT, Finalizing
from worker.leases import LeaseKeeper
from worker.refs import resolve
from worker.retry import retrying

STEPS_PER_CALL = 16


def _spec(job: Job, model: ModelSpec) -> VisualizeSpec:
    return job.spec.work.for_model(model)


def _output(keys: JobKeys, item, snapshots: list[str], final: bool) -> OutputRecord:
    files = {"curve": keys.output(item.index, 0, "visualize", "curve")}
    if final:
        files.update(png=keys.output(item.index, 0, "visualize", "png"),
                     npy=keys.output(item.index, 0, "visualize", "npy"))
    return OutputRecord(method="visualize", position=0, target=item.objective.to_json(),
                        files=files, snapshots=tuple(snapshots))


def _record(item, status: ItemStatus, output: OutputRecord | None, worker: str | None,
            error: str | None = None) -> ItemRecord:
    return ItemRecord(index=item.index, status=status, input=json.dumps(item.objective.to_json()),
                      error=error, outputs=(output,) if output else (), worker=worker)


def run_visualization(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
                      worker: str | None) -> tuple[RunResult | None, bool]:
    """Optimize one batch of items, from its checkpoint if it has one."""
    from worker.visualize import VisualizationRun

    record, engine = job_model(ctx, job)
    spec = _spec(job, record.spec)
    items = [it for it in spec.items() if lease.start <= it.index < lease.stop]
    inputs = {it.index: resolve(ctx, job, record.spec, ref, f"objective item {it.index}")
              for it in items if (ref := getattr(it.objective, "input", None)) is not None}
    keys = JobKeys(job.tenant, job.id)
    checkpoint = keys.checkpoint(lease.start)
    options = {"preprocessing": record.spec.preprocessing, "inputs": inputs}
    try:
        run = VisualizationRun.restore(ctx.storage.get(checkpoint), engine, spec, items,
                                       **options)
    except FileNotFoundError:
        run = VisualizationRun.start(engine, spec, items, **options)
    budget = ctx.settings.retry_budget_s
    # Snapshot keys are fixed by item and step: a restored run lists the earlier ones too.
    taken = range(spec.snapshot_every, run.steps_done + 1, spec.snapshot_every) if (
        spec.snapshot_every) else ()
    snapshots = {it.index: [keys.snapshot(it.index, step) for step in taken] for it in items}
    deadline = time.monotonic() + ctx.settings.task_time_limit_s / 2

    def put(key: str, data: bytes, media: str) -> None:
        retrying(lambda: ctx.storage.put(key, data, media), budget, f"writing {key}")

    def show(final: bool) -> None:
        for result in run.results() if final else []:
            index = result.item.index
            put(keys.output(index, 0, "visualize", "png"), result.png(), "image/png")
            put(keys.output(index, 0, "visualize", "npy"), result.npy(),
                "application/octet-stream")
        for j, item in enumerate(items):
            put(keys.output(item.index, 0, "visualize", "curve"),
                json.dumps(run.curves[j]).encode(), "application/json")
            out = _output(keys, item, snapshots[item.index], final)
            rec = _record(item, ItemStatus.SUCCEEDED if final else ItemStatus.PENDING, out,
                          worker)
            write = ctx.jobs.record_item if final else ctx.jobs.item_progress
            if not retrying(lambda rec=rec, write=write: write(lease, rec),
                            budget, f"recording item {item.index}"):
                raise Fenced(f"job {job.id} chunk {lease.start}: lease taken over")

    every = spec.snapshot_every or STEPS_PER_CALL
    while not run.done:
        if keeper.lost.is_set():
            raise Fenced(f"job {job.id} chunk {lease.start}: lease taken over")
        if ctx.jobs.stopping(job.id):
            return None, False
        if time.monotonic() > deadline:
            data = run.checkpoint()
            put(checkpoint, data, "application/octet-stream")
            return RunResult(lease.start), False  # the chunk continues in a fresh task
        report = run.step(min(every, STEPS_PER_CALL), should_stop=keeper.lost.is_set)
        for snap in report.snapshots:  # `snap.item` is the job's item index
            key = keys.snapshot(snap.item, snap.step)
            put(key, snap.png(), "image/png")
            snapshots[snap.item].append(key)
        ctx.jobs.count_steps(job.id, len(report.values) * len(items))
        show(final=False)
    show(final=True)
    ctx.storage.delete(checkpoint)
    return RunResult(lease.stop), False


def finalize_visualization(f: Finalizing, _model: ModelSpec | None) -> Iterator[str]:
    """The report (every item's objective curve, its figures and picture) and the results
    file (one row per item, `VISUALIZE_SCHEMA`), in one step: a visualization's items are few
    (its objectives × starts)."""
    if f.has(REPORT):
        return
    ctx, job, keys = f.ctx, f.job, f.keys
    items = job.spec.work.items()
    entries: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for item, rec in zip(items, _final_records(ctx, job, items), strict=True):
        curve = _curve(ctx, rec)
        summary = summarize(curve, minimize=minimizes(item.objective))
        rows.append(visualize_row(item, rec, summary))
        if rec.status == ItemStatus.SUCCEEDED and rec.outputs:
            entries.append(_report_entry(ctx, keys, rec, curve, summary))
    with tempfile.TemporaryFile() as out:
        write_rows(rows, out, VISUALIZE_SCHEMA)
        out.seek(0)
        ctx.storage.put_stream(keys.results("parquet"), out, "application/vnd.apache.parquet")
    work = job.spec.work
    report = {"kind": "visualize", "objective": work.to_json()["objective"],
              "steps": work.steps, "items": entries}
    ctx.storage.put(keys.report, json.dumps(report).encode(), "application/json")
    f.record(**{REPORT: "1"})
    yield REPORT


def _final_records(ctx: WorkerContext, job: Job, items: list[VisualizeItem]
                   ) -> list[ItemRecord]:
    """Every item's record, in order: those that never ran or stopped part-way (the job was
    cancelled or failed) as `cancelled`, the latter with the snapshots and curve they showed."""
    stored = ctx.jobs.items(job.id, [item.index for item in items])
    return [rec.ended_unfinished() if rec is not None else
            _record(item, ItemStatus.CANCELLED, None, None, "not run: the job ended first")
            for item, rec in zip(items, stored, strict=True)]


def _curve(ctx: WorkerContext, rec: ItemRecord) -> list[float]:
    """The objective curve an item showed (empty if it showed none)."""
    if not rec.outputs or "curve" not in rec.outputs[0].files:
        return []
    return json.loads(ctx.storage.get(rec.outputs[0].files["curve"]))


def _report_entry(ctx: WorkerContext, keys: JobKeys, rec: ItemRecord, curve: list[float],
                  summary: CurveSummary) -> dict[str, Any]:
    out = rec.outputs[0]
    name = f"items/{rec.index}.png"
    ctx.storage.put(keys.artifact(name), ctx.storage.get(out.files["png"]), "image/png")
    return {"index": rec.index, "objective": out.target, "curve": curve,
            **summary.report_fields(), "png": artifact_ref(name)}
