"""The items of a job in their v1 shape, from either layout (`shared.state.itemlayout`).

Upload and inline jobs keep their item records in Redis and their outputs as files. A
data-set job's records live in one rows file per committed segment and its maps in shards;
its `npy`, `png`, `overlay` and `signed` URLs point at the API (`/maps/…`), which cuts and
renders the map on demand. Every URL is absolute: presigned for S3 files, signed by the API
for what it serves itself.
"""

from __future__ import annotations

import functools
from typing import Any

from api.context import base_url, services
from shared.results.records import (
    OUTPUT_FILES,
    VISUALIZE_FILES,
    InputSource,
    ItemRecord,
    OutputRecord,
)
from shared.spec.job import AttributionSpec
from shared.state.itemlayout import read_rows, unrun
from shared.state.jobs import Job
from shared.status import ItemStatus, JobStatus
from shared.storage.keys import JobKeys, MapName

# Rows files never change (their key has the writer's token): cache the last few read.
_rows = functools.lru_cache(maxsize=64)(read_rows)


def signed_url(path: str) -> str:
    return base_url() + services().signer.sign(path)


def file_url(job: Job, key: str) -> str:
    """A presigned URL for an output file, or the API's signed `files/` URL."""
    svc = services()
    url = svc.storage.presigned_url(key, svc.settings.presign_expires_s)
    if url is not None:
        return url
    return signed_url(f"/v1/jobs/{job.id}/files/{JobKeys(job.tenant, job.id).file_name(key)}")


def artifact_url(job: Job, name: str) -> str:
    """A report's file: presigned on S3, else signed by the API."""
    svc = services()
    url = svc.storage.presigned_url(JobKeys(job.tenant, job.id).artifact(name),
                                    svc.settings.presign_expires_s)
    return url or signed_url(f"/v1/jobs/{job.id}/report/files/{name}")


def _visualize_json(job: Job, out: OutputRecord) -> dict:
    """A visualization's output: its picture, array and curve, and the snapshots so far."""
    return {"method": out.method, "target": out.target,
            **{kind: file_url(job, out.files[kind]) if kind in out.files else None
               for kind in VISUALIZE_FILES},
            "snapshots": [file_url(job, key) for key in out.snapshots]}


def _output_json(job: Job, index: int, out: OutputRecord, kinds: tuple[str, ...]) -> dict:
    urls: dict[str, str | None] = {}
    for kind in OUTPUT_FILES:
        if kind in out.files:
            urls[kind] = file_url(job, out.files[kind])
        elif out.map is not None and kind in kinds:
            name = MapName(index, out.position, out.rank, kind)
            urls[kind] = signed_url(f"/v1/jobs/{job.id}/maps/{name}")
        else:
            urls[kind] = None
    entry: dict[str, Any] = {"method": out.method, "target": out.target, **urls,
                             "coverage": out.coverage}
    if out.rank is not None:
        entry["rank"] = out.rank
    if out.metrics is not None:
        entry["metrics"] = out.metrics
    if out.warnings:
        entry["warnings"] = list(out.warnings)
    if out.params:
        entry["params"] = out.params
    if out.colorbars:
        entry["colorbars"] = {kind: bar for kind, bar in out.colorbars.items() if urls.get(kind)}
    if out.convergence_delta is not None:
        entry["convergence_delta"] = out.convergence_delta
    return entry


def item_json(job: Job, index: int, source: InputSource | None,
              record: ItemRecord | None) -> dict[str, Any]:
    """One item as `/items` shows it; once the job has ended failed or cancelled, one that
    never ran is `cancelled` with the error the results file gives it (`unrun`)."""
    ended = job.status in (JobStatus.CANCELLED, JobStatus.FAILED)
    if record is None and ended and source is not None:
        record = unrun(index, source)
    if record is None:
        out = {"index": index, "input": source.name if source else None,
               "status": ItemStatus.PENDING.value, "error": None, "prediction": None,
               "outputs": [], "worker": None}
        if source is not None and source.id is not None:
            out["id"] = source.id
        return out
    if ended:
        record = record.ended_unfinished()
    work = job.spec.work
    kinds = work.outputs if isinstance(work, AttributionSpec) else OUTPUT_FILES
    out = {
        "index": index, "input": record.input, "status": record.status.value,
        "error": record.error,
        "prediction": record.prediction.to_json() if record.prediction else None,
        "outputs": [_visualize_json(job, o) if o.method == "visualize" else
                    _output_json(job, index, o, kinds) for o in record.outputs],
        "worker": record.worker,
    }
    if record.id is not None:
        out["id"] = record.id
    if record.label is not None:
        out.update(label=record.label, label_score=record.to_json()["label_score"],
                   correct=record.correct)
    return out


def page(job: Job, start: int, stop: int) -> list[dict[str, Any]]:
    """Items `start`..`stop` of a job."""
    if stop <= start:
        return []
    entries = services().layout(job, rows=_rows).page(start, stop)
    return [item_json(job, index, source, record)
            for index, (source, record) in enumerate(entries, start)]


def find_record(job: Job, index: int) -> ItemRecord | None:
    """One item's record, from either layout."""
    return services().layout(job, rows=_rows).record(index)
