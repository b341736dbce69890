"""`visualize` jobs: optimization-based visualization (`worker.kinds.visualize`) as chunks.

A chunk is one batch of the job's items (objective × start), optimized together on one
worker: the state is the image. Every `snapshot_every` steps (or every 16) the run shows its
progress — the items' snapshots and curves so far, and `progress.done` in steps — and is
checked for cancellation. When its time budget is spent it saves a checkpoint (the image or
its Fourier coefficients, Adam's state, the random generators) and hands the chunk back; the
next run continues from the checkpoint exactly as the first would have. Its results file has
visualize's own columns (`shared.results.table.VISUALIZE_SCHEMA`), and its report every item's
objective curve and its figures (`shared.results.curves`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from shared.results.curves import CurveSummary, summarize
from shared.results.records import ItemRecord, OutputRecord
from shared.results.reports import artifact_ref
from shared.results.table import VISUALIZE_SCHEMA, visualize_row
from shared.spec.model import ModelSpec
from shared.spec.visualize import VisualizeSpec, minimizes
from shared.state.chunks import Fenced, Lease
from shared.state.jobs import Job
from shared.status import ItemStatus
from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.jobs.finalizing import Finalizing, Results
from worker.jobs.leases import LeaseKeeper
from worker.jobs.models import job_model
from worker.jobs.refs import resolve
from worker.jobs.retry import retrying, within
from worker.jobs.runtime import RunResult

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


def _record(item, status: ItemStatus, output: OutputRecord, worker: str | None
            ) -> ItemRecord:
    return ItemRecord(index=item.index, status=status, input=json.dumps(item.objective.to_json()),
                      outputs=(output,), worker=worker)


def run_visualization(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
                      worker: str | None) -> tuple[RunResult | None, bool]:
    """Optimize one batch of items, from its checkpoint if it has one."""
    from worker.kinds.visualize import VisualizationRun

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
    sink = ctx.layout(job).sink(lease, within(budget))

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
            if final:
                sink.add(_record(item, ItemStatus.SUCCEEDED, out, worker))
                continue
            rec = _record(item, ItemStatus.PENDING, out, worker)
            if not retrying(lambda rec=rec: ctx.jobs.item_progress(lease, rec), budget,
                            f"recording item {item.index}"):
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
    sink.finish(lease.stop)
    ctx.storage.delete(checkpoint)
    return RunResult(lease.stop), False


def _curve(ctx: WorkerContext, rec: ItemRecord) -> list[float]:
    """The objective curve an item showed (empty if it showed none)."""
    if not rec.outputs or "curve" not in rec.outputs[0].files:
        return []
    return json.loads(ctx.storage.get(rec.outputs[0].files["curve"]))


def visualize_results(f: Finalizing, _model: ModelSpec | None) -> Results:
    """One row per item (`VISUALIZE_SCHEMA`): its objective, start, status and its curve's
    figures (so far, for an item the job's end cut short)."""
    items = f.job.spec.work.items()

    def rows(rec: ItemRecord) -> Iterator[dict[str, Any]]:
        item = items[rec.index]
        yield visualize_row(item, rec, summarize(_curve(f.ctx, rec),
                                                 minimize=minimizes(item.objective)))

    return Results(rows, VISUALIZE_SCHEMA)


def visualize_report(f: Finalizing, _model: ModelSpec | None) -> Iterator[str]:
    """The report: every finished item's objective curve, its figures and picture, in one
    step (a visualization's items are few: its objectives × starts)."""
    ctx, job, keys = f.ctx, f.job, f.keys
    items = job.spec.work.items()
    entries: list[dict[str, Any]] = []
    for rec in f.records():
        if rec.status == ItemStatus.SUCCEEDED and rec.outputs:
            curve = _curve(ctx, rec)
            summary = summarize(curve, minimize=minimizes(items[rec.index].objective))
            entries.append(_report_entry(ctx, keys, rec, curve, summary))
    work = job.spec.work
    yield f.write_report({"kind": "visualize", "objective": work.to_json()["objective"],
                          "steps": work.steps, "items": entries})


def _report_entry(ctx: WorkerContext, keys: JobKeys, rec: ItemRecord, curve: list[float],
                  summary: CurveSummary) -> dict[str, Any]:
    out = rec.outputs[0]
    name = f"items/{rec.index}.png"
    ctx.storage.put(keys.artifact(name), ctx.storage.get(out.files["png"]), "image/png")
    return {"index": rec.index, "objective": out.target, "curve": curve,
            **summary.report_fields(), "png": artifact_ref(name)}
