"""Phase 1 of a `top_activations` job: the merge of the scan's partials, and one chunk per
channel that projects its top-k units, cuts their patches and draws the channel's grid. A
few units are projected again on other top images: projections that barely depend on their
images earn the channel a warning (`worker.kinds.top_activations.feature_maps.dependence`).

Every file of a channel has a fixed name, so a redone chunk rewrites the same objects.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from shared.errors import InputError
from shared.media import render
from shared.results.reports import artifact_ref
from shared.spec.inputs import InputRef
from shared.spec.layers import ModelLayers
from shared.spec.top_activations import TopActivationsSpec
from shared.state.chunks import Fenced, Lease
from shared.state.jobs import Job
from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.jobs.leases import LeaseKeeper
from worker.jobs.models import job_model
from worker.jobs.phases import start_phase
from worker.jobs.refs import ref_source
from worker.jobs.retry import retrying
from worker.jobs.runtime import RunResult

MERGED = "topk.json"


def merged(ctx: WorkerContext, job: Job):
    """The job's merged top-k (written by `start_projections`)."""
    from worker.kinds.top_activations.feature_maps import TopK

    return TopK.from_json(json.loads(ctx.storage.get(JobKeys(job.tenant, job.id).artifact(
        MERGED))))


def next_phase(ctx: WorkerContext, job: Job) -> bool:
    """After the scan, the projections (once); after those, nothing."""
    return job.phase == 0 and not job.finalizing and start_projections(ctx, job)


def start_projections(ctx: WorkerContext, job: Job) -> bool:
    """Merge the scan's partials and add one chunk per channel; False if nothing to project."""
    from worker.kinds.top_activations.feature_maps import TopK

    spec: TopActivationsSpec = job.spec.work
    parts = [TopK.from_bytes(ctx.storage.get(s.partial)) for s in ctx.chunks.segments(job.id)
             if s.partial]
    if not parts:
        return False
    top = TopK.merge(parts)
    keys = JobKeys(job.tenant, job.id)
    ctx.storage.put(keys.artifact(MERGED), json.dumps(top.to_json()).encode(),
                    "application/json")
    channels = list(top.channels)
    due = sum(len(top.top(c)) for c in channels) * len(spec.methods)
    start_phase(ctx, job, 1, len(channels), projections_due=due)
    return True


def _item_id(ctx: WorkerContext, job: Job, index: int) -> tuple[str, str | None]:
    source = ref_source(ctx, job, InputRef("item", index))
    return source.name, source.id


def _why(layers: ModelLayers, layer: str, method: str) -> str:
    """What a DeconvNet warning adds when no max-pooling precedes the layer."""
    found = layers.layers.get(layer)
    if method != "deconvnet" or found is None or found.max_pool_before is not False:
        return ""
    return (f"; no max-pooling precedes layer {layer!r}, so DeconvNet follows no image's "
            "switches (guided_backprop is this layer's default projection)")


def _npy(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(values, dtype=np.float32))
    return buf.getvalue()


def run_projection(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
                   worker: str | None) -> tuple[RunResult | None, bool]:
    """Project the top-k units of one channel (chunk `start` is the channel's rank)."""
    from worker.jobs.inputs import load_input
    from worker.kinds.top_activations.feature_maps import grid_png, project, projection_crop
    from worker.kinds.top_activations.feature_maps.dependence import alike_warning, probe_units

    work: TopActivationsSpec = job.spec.work
    record, engine = job_model(ctx, job)
    top = merged(ctx, job)
    channel = top.channels[lease.start]
    units = [(channel, unit) for unit in top.top(channel)]
    images = {}
    for _, unit in units:
        loaded = load_input(ctx, job.tenant, record.spec, unit.index,
                            ref_source(ctx, job, InputRef("item", unit.index)))
        if loaded.error is not None:
            raise InputError(f"item {unit.index}: {loaded.error}")
        images[unit.index] = loaded.x
    methods = [m.name for m in work.methods]
    projections = project(engine, work.layer, units, images, methods, record.spec.preprocessing)
    # Apart, so the top-k's own projections are batched (and computed) as they always were.
    probed = project(engine, work.layer, probe_units(units), images, methods,
                     record.spec.preprocessing)
    warnings = [w for m in methods if (w := alike_warning(
        projections, probed, m, _why(record.layers, work.layer, m))) is not None]
    if keeper.lost.is_set():
        raise Fenced(f"job {job.id} channel {channel}: lease taken over")
    keys = JobKeys(job.tenant, job.id)
    budget = ctx.settings.retry_budget_s

    def put(name: str, data: bytes, media: str) -> str:
        retrying(lambda: ctx.storage.put(keys.artifact(name), data, media), budget,
                 f"writing {name}")
        return artifact_ref(name)

    entries: list[dict[str, Any]] = []
    for rank, p in enumerate(projections):
        base = f"channels/{channel}/{rank}"
        name, item_id = _item_id(ctx, job, p.top.index)
        entries.append({
            "index": p.top.index, "id": item_id, "input": name,
            "activation": float(p.top.activation), "position": list(p.top.position),
            "patch_box": list(p.patch_box),
            "projections": {m: {"npy": put(f"{base}-{m}.npy", _npy(p.maps[m]),
                                           "application/octet-stream"),
                                "png": put(f"{base}-{m}.png",
                                           render.encode_png(projection_crop(p, m)),
                                           "image/png")}
                            for m in methods},
            "patch": put(f"{base}-patch.png", render.encode_png(p.patch), "image/png"),
        })
    grid = put(f"channels/{channel}/grid.png", grid_png(projections, methods, layer=work.layer),
               "image/png")
    fragment: dict[str, Any] = {"channel": channel, "grid": grid, "top": entries}
    if warnings:
        fragment["warnings"] = warnings
    put(f"channels/{channel}.json", json.dumps(fragment).encode(), "application/json")
    ctx.jobs.count_projections(job.id, len(projections) * len(methods))
    return RunResult(lease.stop), False
