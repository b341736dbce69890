"""Finalizing a `top_activations` job: the report (each channel's top-k with its projections,
patches and grid) and the results file (each input's scan status)."""

from __future__ import annotations

import json
import tempfile

from shared.jobs import Job
from shared.keys import JobKeys
from shared.modelspec import ModelSpec
from shared.results import write_parquet
from shared.specs import job_spec_from_json
from shared.top_activations_spec import TopActivationsSpec
from worker.attribution.finalize import records
from worker.context import WorkerContext


def next_phase(ctx: WorkerContext, job: Job) -> bool:
    """After the scan, the projections (once); after those, nothing."""
    from worker.top_activations.project import start_projections

    return job.phase == 0 and not job.finalizing and start_projections(ctx, job)


def finalize_top_activations(ctx: WorkerContext, job: Job, model: ModelSpec | None) -> None:
    from worker.top_activations.project import merged

    keys = JobKeys(job.tenant, job.id)
    work: TopActivationsSpec = job_spec_from_json(job.spec).work
    class_name = model.class_name if model else (lambda _i: None)
    with tempfile.TemporaryFile() as out:
        write_parquet(records(ctx, job), out, class_name)
        out.seek(0)
        ctx.storage.put_stream(keys.results("parquet"), out, "application/vnd.apache.parquet")
    channels = []
    if job.phase == 1:
        for channel in merged(ctx, job).channels:
            try:
                channels.append(json.loads(ctx.storage.get(keys.artifact(
                    f"channels/{channel}.json"))))
            except FileNotFoundError:
                continue  # a cancelled job's channel that was not projected
    report = {"kind": "top_activations", "layer": work.layer, "k": work.k,
              "methods": [m.name for m in work.methods], "channels": channels}
    ctx.storage.put(keys.report, json.dumps(report).encode(), "application/json")
