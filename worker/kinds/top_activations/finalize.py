"""A `top_activations` job's report: each channel's top-k with its projections, patches and
grid (its results file, each input's scan status, is the runtime's: `worker.jobs.finalizing`)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from shared.spec.model import ModelSpec
from shared.spec.top_activations import TopActivationsSpec
from worker.jobs.finalizing import Finalizing
from worker.kinds.top_activations.project import merged


def top_activations_report(f: Finalizing, model: ModelSpec | None) -> Iterator[str]:
    """The report: the projected channels' fragments, in the merged top-k's order."""
    ctx, job = f.ctx, f.job
    work: TopActivationsSpec = job.spec.work
    channels = []
    if job.phase == 1:
        for channel in merged(ctx, job).channels:
            try:
                channels.append(json.loads(ctx.storage.get(f.keys.artifact(
                    f"channels/{channel}.json"))))
            except FileNotFoundError:
                continue  # a cancelled job's channel that was not projected
    report: dict = {"kind": "top_activations", "layer": work.layer, "k": work.k,
                    "methods": [m.name for m in work.methods]}
    if work.methods_reason is not None:  # the service chose the methods: why
        report["methods_reason"] = work.methods_reason
    report["channels"] = channels
    yield f.write_report(report)
