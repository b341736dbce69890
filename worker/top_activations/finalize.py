"""Finalizing a `top_activations` job: the report (each channel's top-k with its projections,
patches and grid) and the results file (each input's scan status)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from shared.jobs import Job
from shared.modelspec import ModelSpec
from shared.top_activations_spec import TopActivationsSpec
from worker.attribution.finalize import records
from worker.context import WorkerContext
from worker.finalizing import REPORT, Finalizing, write_results


def next_phase(ctx: WorkerContext, job: Job) -> bool:
    """After the scan, the projections (once); after those, nothing."""
    from worker.top_activations.project import start_projections

    return job.phase == 0 and not job.finalizing and start_projections(ctx, job)


def finalize_top_activations(f: Finalizing, model: ModelSpec | None) -> Iterator[str]:
    """The results file (in checkpointed steps, `worker.finalizing`), then the report."""
    from worker.top_activations.project import merged

    ctx, job = f.ctx, f.job
    work: TopActivationsSpec = job.spec.work
    class_name = model.class_name if model else (lambda _i: None)
    yield from write_results(f, lambda start: records(ctx, job, start), class_name)
    if f.has(REPORT):
        return
    channels = []
    if job.phase == 1:
        for channel in merged(ctx, job).channels:
            try:
                channels.append(json.loads(ctx.storage.get(f.keys.artifact(
                    f"channels/{channel}.json"))))
            except FileNotFoundError:
                continue  # a cancelled job's channel that was not projected
    report = {"kind": "top_activations", "layer": work.layer, "k": work.k,
              "methods": [m.name for m in work.methods], "channels": channels}
    ctx.storage.put(f.keys.report, json.dumps(report).encode(), "application/json")
    f.record(**{REPORT: "1"})
    yield REPORT
