"""Phase 1 of an attribution job: the audit's heavy parts, fanned out across workers.

When every item is attributed, `start_audit` gathers the 32×32 thumbnails of the maps by
method position and predicted class (`worker.kinds.attribution.groups`: streamed through scratch
files, so memory stays flat however large the job), writes each group of at least
`MIN_CLASS_ITEMS` maps with its seeded sample of at most `SALIENCY_SPRAY_SAMPLE` first, and
adds one chunk per group — its SpRAy clustering of the sample, then the rest assigned block
by block — plus one chunk for the sanity check when the job asks for it. Each chunk writes
its result at a fixed name; the finalizer (`worker.kinds.attribution.finalize`) reads them into the
report.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from shared.spec.inputs import InputRef
from shared.spec.job import AttributionSpec
from shared.state.chunks import Lease
from shared.state.jobs import Job
from shared.status import ItemStatus
from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.jobs.leases import LeaseKeeper
from worker.jobs.phases import start_phase
from worker.jobs.retry import retrying
from worker.jobs.runtime import RunResult
from worker.kinds.attribution.audit import MIN_CLASS_ITEMS
from worker.kinds.attribution.audit.spray import group_seed
from worker.kinds.attribution.groups import read_group, write_groups

PLAN = "audit/plan.json"
SANITY = "audit/sanity.json"


def clusters_name(position: int, cls: int) -> str:
    return f"audit/clusters/{position}-{cls}.npz"


def _predictions(ctx: WorkerContext, job: Job) -> np.ndarray:
    """Each item's predicted class, -1 where it has none (failed or not run)."""
    predicted = np.full(job.total, -1, dtype=np.int64)
    for r in ctx.layout(job).records():
        if r.status == ItemStatus.SUCCEEDED and r.prediction is not None:
            predicted[r.index] = r.prediction.cls
    return predicted


def next_phase(ctx: WorkerContext, job: Job) -> bool:
    """After the items, the audit's clustering and sanity check (once); then nothing."""
    return job.phase == 0 and not job.finalizing and start_audit(ctx, job)


def start_audit(ctx: WorkerContext, job: Job) -> bool:
    """Plan the audit phase; False when there is nothing to fan out."""
    work: AttributionSpec = job.spec.work
    predicted = _predictions(ctx, job)
    counts = np.bincount(predicted[predicted >= 0])
    classes = np.flatnonzero(counts >= MIN_CLASS_ITEMS).tolist()
    keys = JobKeys(job.tenant, job.id)
    tasks: list[dict[str, Any]] = []
    if classes:
        tasks += write_groups(ctx, job, predicted, classes, job.spec.seed)
    succeeded = int((predicted >= 0).sum())
    if work.sanity_sample and succeeded:
        tasks.append({"sanity": min(work.sanity_sample, succeeded)})
    if not tasks:
        return False
    ctx.storage.put(keys.artifact(PLAN), json.dumps(tasks).encode(), "application/json")
    start_phase(ctx, job, 1, len(tasks))
    return True


def _save_clustering(clustering) -> bytes:
    buf = io.BytesIO()
    arrays = {"labels": clustering.labels, "eigenvalues": clustering.eigenvalues,
              "sampled": clustering.sampled,
              "shares": np.array([c.share for c in clustering.clusters], dtype=np.float64)}
    for c, cluster in enumerate(clustering.clusters):
        arrays[f"members{c}"] = np.asarray(cluster.members)
        arrays[f"mean{c}"] = cluster.mean_map
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_clustering(data: bytes):
    """A clustering written by an audit chunk (`worker.kinds.attribution.audit.Clustering`)."""
    from worker.kinds.attribution.audit import Cluster, Clustering

    with np.load(io.BytesIO(data)) as z:
        shares = z["shares"]
        clusters = tuple(Cluster(z[f"members{c}"], float(shares[c]), z[f"mean{c}"])
                         for c in range(len(shares)))
        return Clustering(clusters, z["labels"], z["eigenvalues"], int(z["sampled"]))


def _sanity(ctx: WorkerContext, job: Job, sample: int) -> dict[str, Any]:
    """The sanity check on the first `sample` succeeded items, with their predicted classes."""
    import torch

    from worker.jobs.inputs import load_input
    from worker.jobs.models import job_model
    from worker.jobs.refs import ref_source, resolve_methods
    from worker.kinds.attribution.audit import sanity_check

    spec = job.spec
    record, engine = job_model(ctx, job)
    images, targets = [], []
    for rec in ctx.layout(job).records():
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
    from worker.kinds.attribution.audit import spray_clusters

    keys = JobKeys(job.tenant, job.id)
    task = json.loads(ctx.storage.get(keys.artifact(PLAN)))[lease.start]
    budget = ctx.settings.retry_budget_s
    if "group" in task:
        position, cls = task["group"]
        thumbs, ids, rest = read_group(ctx, keys, position, cls)
        seed = group_seed(job.spec.seed, position, cls)
        clustering = spray_clusters(thumbs, ids, seed=seed, rest=rest)
        data = _save_clustering(clustering)
        retrying(lambda: ctx.storage.put(keys.artifact(clusters_name(position, cls)), data),
                 budget, "writing a clustering")
    else:
        data = json.dumps(_sanity(ctx, job, task["sanity"])).encode()
        retrying(lambda: ctx.storage.put(keys.artifact(SANITY), data, "application/json"),
                 budget, "writing the sanity check")
    return RunResult(lease.stop), False
