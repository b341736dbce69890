"""Phase 1 of an attribution job: the audit's heavy parts, fanned out across workers.

When every item is attributed, `start_audit` gathers the 32×32 thumbnails of the maps by
method position and predicted class (streamed through one memory-mapped file per position,
so memory stays flat however large the job), writes each group of at least
`MIN_CLASS_ITEMS` maps as one file, and adds one chunk per group — its SpRAy clustering —
plus one chunk for the sanity check when the job asks for it. Each chunk writes its result
at a fixed name; the finalizer (`worker.attribution.finalize`) reads them into the report.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections import Counter
from typing import Any

import numpy as np

from shared.chunks import Lease
from shared.inputs import InputRef
from shared.jobs import Job
from shared.keys import JobKeys
from shared.seeds import derive_seed
from shared.specs import AttributionSpec
from shared.status import ItemStatus
from worker.attribution.sinks import RunResult
from worker.audit import MIN_CLASS_ITEMS
from worker.context import WorkerContext
from worker.leases import LeaseKeeper
from worker.phases import start_phase
from worker.retry import retrying

PLAN = "audit/plan.json"
SIDE = 32


def group_name(position: int, cls: int) -> str:
    return f"audit/groups/{position}-{cls}.npz"


def clusters_name(position: int, cls: int) -> str:
    return f"audit/clusters/{position}-{cls}.npz"


SANITY = "audit/sanity.json"


def _thumb_files(ctx: WorkerContext, job: Job):
    """Each committed run's thumbnails: (position, item indices, K×32×32 float32)."""
    from safetensors.numpy import load

    for segment in ctx.chunks.segments(job.id):
        if not segment.thumbs:
            continue
        tensors = load(ctx.storage.get(segment.thumbs))
        for name, maps in tensors.items():
            if name.startswith("maps."):
                position = int(name.split(".", 1)[1])
                scale = tensors[f"scale.{position}"][:, None, None]
                yield position, tensors[f"index.{position}"], maps.astype(np.float32) * scale


def _predictions(ctx: WorkerContext, job: Job) -> dict[int, int]:
    from worker.attribution.finalize import records

    return {r.index: r.prediction.cls for r in records(ctx, job)
            if r.status == ItemStatus.SUCCEEDED and r.prediction is not None}


def start_audit(ctx: WorkerContext, job: Job) -> bool:
    """Plan the audit phase; False when there is nothing to fan out."""
    work: AttributionSpec = job.spec.work
    predicted = _predictions(ctx, job)
    counts = Counter(predicted.values())
    classes = sorted(c for c, n in counts.items() if n >= MIN_CLASS_ITEMS)
    keys = JobKeys(job.tenant, job.id)
    tasks: list[dict[str, Any]] = []
    if classes:
        tasks += _write_groups(ctx, job, keys, predicted, set(classes))
    if work.sanity_sample and predicted:
        tasks.append({"sanity": min(work.sanity_sample, len(predicted))})
    if not tasks:
        return False
    ctx.storage.put(keys.artifact(PLAN), json.dumps(tasks).encode(), "application/json")
    start_phase(ctx, job, 1, len(tasks))
    return True


def _write_groups(ctx: WorkerContext, job: Job, keys: JobKeys, predicted: dict[int, int],
                  classes: set[int]) -> list[dict[str, Any]]:
    """Sort the thumbnails into (position, class) groups, one file each."""
    indices = np.array(sorted(i for i, c in predicted.items() if c in classes), dtype=np.int64)
    slot = {int(i): s for s, i in enumerate(indices)}
    positions: dict[int, tuple[np.memmap, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for position, items, maps in _thumb_files(ctx, job):
            if position not in positions:
                store = np.memmap(f"{tmp}/{position}", dtype=np.float16, mode="w+",
                                  shape=(max(len(indices), 1), SIDE, SIDE))
                positions[position] = (store, np.zeros(len(indices), dtype=bool))
            store, filled = positions[position]
            for k, index in enumerate(items.tolist()):
                s = slot.get(int(index))
                if s is not None:
                    store[s] = maps[k]
                    filled[s] = True
        tasks = []
        classes_of = np.array([predicted[int(i)] for i in indices], dtype=np.int64)
        for position, (store, filled) in sorted(positions.items()):
            for cls in sorted(classes):
                members = np.flatnonzero((classes_of == cls) & filled)
                if len(members) < MIN_CLASS_ITEMS:
                    continue
                buf = io.BytesIO()
                np.savez(buf, thumbs=np.asarray(store[members], dtype=np.float32),
                         ids=indices[members])
                name = group_name(position, cls)
                ctx.storage.put(keys.artifact(name), buf.getvalue(), "application/octet-stream")
                tasks.append({"group": [position, cls]})
    return tasks


def _save_clustering(clustering) -> bytes:
    buf = io.BytesIO()
    arrays = {"labels": clustering.labels, "eigenvalues": clustering.eigenvalues,
              "shares": np.array([c.share for c in clustering.clusters], dtype=np.float64)}
    for c, cluster in enumerate(clustering.clusters):
        arrays[f"members{c}"] = np.asarray(cluster.members)
        arrays[f"mean{c}"] = cluster.mean_map
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_clustering(data: bytes):
    """A clustering written by an audit chunk (`worker.audit.Clustering`)."""
    from worker.audit import Cluster, Clustering

    with np.load(io.BytesIO(data)) as z:
        shares = z["shares"]
        clusters = tuple(Cluster(z[f"members{c}"], float(shares[c]), z[f"mean{c}"])
                         for c in range(len(shares)))
        return Clustering(clusters, z["labels"], z["eigenvalues"])


def _sanity(ctx: WorkerContext, job: Job, sample: int) -> dict[str, Any]:
    """The sanity check on the first `sample` succeeded items, with their predicted classes."""
    import torch

    from worker.attribution.finalize import records
    from worker.audit import sanity_check
    from worker.engines import job_model
    from worker.inputs import load_input
    from worker.refs import ref_source, resolve_methods

    spec = job.spec
    record, engine = job_model(ctx, job)
    images, targets = [], []
    for rec in records(ctx, job):
        if rec.status != ItemStatus.SUCCEEDED or rec.prediction is None:
            continue
        loaded = load_input(ctx, job.tenant, record.spec, rec.index,
                            ref_source(ctx, job, InputRef("item", rec.index)))
        if loaded.error is None:
            images.append(loaded.x)
            targets.append(rec.prediction.cls)
        if len(images) == sample:
            break
    methods = resolve_methods(ctx, job, record.spec, spec.work.methods)  # with their params
    result = sanity_check(engine.model, torch.stack(images), methods, seed=spec.seed,
                          targets=targets)
    return result.to_json()


def run_audit(ctx: WorkerContext, job: Job, lease: Lease, keeper: LeaseKeeper,
              worker: str | None) -> tuple[RunResult | None, bool]:
    """One audit chunk: a group's clustering, or the sanity check."""
    from worker.audit import spray_clusters

    keys = JobKeys(job.tenant, job.id)
    task = json.loads(ctx.storage.get(keys.artifact(PLAN)))[lease.start]
    budget = ctx.settings.retry_budget_s
    if "group" in task:
        position, cls = task["group"]
        with np.load(io.BytesIO(ctx.storage.get(keys.artifact(group_name(position, cls))))) as z:
            thumbs, ids = z["thumbs"], z["ids"]
        seed = derive_seed(job.spec.seed, position, cls)
        clustering = spray_clusters(thumbs, ids, seed=seed)
        data = _save_clustering(clustering)
        retrying(lambda: ctx.storage.put(keys.artifact(clusters_name(position, cls)), data),
                 budget, "writing a clustering")
    else:
        data = json.dumps(_sanity(ctx, job, task["sanity"])).encode()
        retrying(lambda: ctx.storage.put(keys.artifact(SANITY), data, "application/json"),
                 budget, "writing the sanity check")
    return RunResult(lease.stop), False
