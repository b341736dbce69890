"""Planning a data-set job: the manifest, the listing, or the index of each WebDataset shard
or Hugging Face file streamed into plan files and chunks.

The API only checks that the data set exists; this task reads it, one line, one key or one
shard's headers at a time, and writes the inputs of each run of `SALIENCY_DATASET_CHUNK_SIZE`
items as one plan file (JSON lines), adding its chunks to the ledger as `planned`: one chunk
per plan file, split where the inputs pass from one shard or file to the next, so that a
chunk reads its inputs with one range read. Memory is one plan file's inputs (and one shard
or file's header at a time), whatever the size of the data set. When planning ends the
job's total is set and counted among the tenant's queued items, and its chunks become ready
(once its model is); a data set past the tenant's quota (`SALIENCY_MAX_QUEUED_ITEMS`) fails
the job instead.
A planner that dies is started again by the reconciler, from scratch (plan files are
overwritten, the ledger reset). A data set with `annotations` has them read into an index
first (`worker.jobs.annotation_index`), and each item's plan line carries its image's objects.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlparse

from shared.errors import InputError
from shared.results.records import InputSource
from shared.spec.datasets import (
    DatasetSpec,
    folder_label,
    is_image_key,
    long_manifest_line,
    parse_manifest_line,
)
from shared.state.jobs import Job
from shared.state.jobschema import ChunkStatus
from shared.storage import hfdatasets, webdataset
from shared.storage.interface import LongLine, iter_lines
from shared.storage.keys import JobKeys
from shared.taskqueue import NEXT_PHASE, send_control
from worker.jobs.annotation_index import annotation_index
from worker.jobs.context import WorkerContext

log = logging.getLogger(__name__)


def _manifest(ctx: WorkerContext, job: Job, spec: DatasetSpec) -> Iterator[InputSource]:
    location = ctx.locator.locate(spec.manifest, job.tenant, "dataset.manifest", own_area=True)
    base = posixpath.dirname(spec.manifest)
    number = 0
    limit = ctx.settings.max_manifest_line_bytes
    for raw in iter_lines(location.storage, location.key, limit):
        if isinstance(raw, LongLine):
            yield long_manifest_line(number, raw.size, limit)
            number += 1
            continue
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            continue
        yield parse_manifest_line(line, number, base)
        number += 1


def _listing(ctx: WorkerContext, job: Job, spec: DatasetSpec,
             skipped: list[int]) -> Iterator[InputSource]:
    classes: dict[str, int] = {}
    for rel, uri in _listed(ctx, job, spec.prefix, spec.field, is_image_key, skipped):
        label: int | str | None = None
        if spec.labels == "folder":
            name = folder_label(rel, "")
            if name is not None:
                label = spec.label_map.get(name, name) if spec.label_map else name
                if isinstance(label, str) and label.isdecimal() and label.isascii():
                    label = int(label)
        elif spec.labels == "folder-sorted" and "/" in rel:
            # torchvision's ImageFolder: the class folders directly under the root, numbered
            # in sorted order; a key-ordered listing meets them in that order.
            label = classes.setdefault(rel.split("/", 1)[0], len(classes))
        yield InputSource(name=uri, uri=uri, id=uri, label=label)


def _webdataset(ctx: WorkerContext, job: Job, spec: DatasetSpec,
                skipped: list[int]) -> Iterator[InputSource]:
    """The samples of each shard the pattern names, or of each `.tar` under the prefix."""
    field, label_field = spec.field, spec.label_field or webdataset.DEFAULT_LABEL_FIELD
    base = webdataset.base_of(spec.webdataset)
    if webdataset.is_pattern(spec.webdataset):
        shards: Iterator[str] = webdataset.expand(spec.webdataset, field)
    else:
        shards = (uri for _, uri in _listed(ctx, job, spec.webdataset, field,
                                            lambda key: key.endswith(".tar"), skipped))
    count = 0
    for uri in shards:
        count += 1
        location = ctx.locator.locate(uri, job.tenant, field, own_area=True)
        yield from webdataset.index_shard(
            lambda loc=location: loc.storage.reader(loc.key), uri,
            webdataset.shard_id(uri, base), label_field)
    if not count:
        raise InputError(f"{field}: no .tar shards under {spec.webdataset!r}")


def _huggingface(ctx: WorkerContext, job: Job, spec: DatasetSpec) -> Iterator[InputSource]:
    """The rows of each Parquet or Arrow file of the split."""
    field, uri = spec.field, spec.huggingface
    if urlparse(uri).path.endswith(".parquet"):
        location = ctx.locator.locate(uri, job.tenant, field, own_area=True)
        root, key = posixpath.dirname(uri) + "/", location.key
    else:
        location = ctx.locator.prefix(uri, job.tenant, field)
        root, key = uri.rstrip("/") + "/", location.key
    fmt, files = hfdatasets.data_files(location.storage, key, spec.split, field)
    image = spec.image_column or hfdatasets.DEFAULT_IMAGE
    label = spec.label_column or hfdatasets.DEFAULT_LABEL
    folder = key[:key.rfind("/") + 1]  # the prefix's key ends with "/"
    count = 0
    for file_key in files:
        count += 1
        rel = file_key[len(folder):]
        file_uri = root + (quote(rel) if root.startswith("file:") else rel)
        fid = rel.rpartition(".")[0]
        if fmt == hfdatasets.PARQUET:
            yield from hfdatasets.index_parquet(location.storage, file_key, file_uri, fid,
                                                image, label, spec.label_column is not None)
        else:
            yield from hfdatasets.index_arrow(
                lambda k=file_key: location.storage.reader(k), file_uri, fid, image, label,
                spec.label_column is not None)
    if not count:
        split = spec.split or hfdatasets.DEFAULT_SPLIT
        raise InputError(f"{field}: no files of split {split!r} under {uri!r}: neither Parquet "
                         f"files named data/{split}-00000-of-00001.parquet (or {split}.parquet, "
                         f"{split}/*.parquet) nor a save_to_disk folder (state.json)")


def _listed(ctx: WorkerContext, job: Job, prefix: str, field: str,
            wanted: Callable[[str], bool], skipped: list[int]) -> Iterator[tuple[str, str]]:
    """(path under the prefix, URI) of each key under a prefix that is `wanted`; the others
    are counted as skipped."""
    location = ctx.locator.prefix(prefix, job.tenant, field)
    root = prefix.rstrip("/") + "/"
    for key in location.storage.list(location.key):
        if not wanted(key):
            skipped[0] += 1
            continue
        rel = key[len(location.key):]
        # file:// URIs are percent-decoded when read back (`shared.storage.interface`): quote the
        # key.
        yield rel, root + (quote(rel) if root.startswith("file:") else rel)


def _sources(ctx: WorkerContext, job: Job, spec: DatasetSpec,
             skipped: list[int]) -> Iterator[InputSource]:
    if spec.manifest:
        return _manifest(ctx, job, spec)
    if spec.webdataset:
        return _webdataset(ctx, job, spec, skipped)
    if spec.huggingface:
        return _huggingface(ctx, job, spec)
    return _listing(ctx, job, spec, skipped)


def _chunks(batch: list[InputSource], start: int) -> list[tuple[int, int]]:
    """The chunks of a plan file: split where its inputs pass from one object (a shard, a
    file) to another, so that a chunk's parts are read together. An input that is no part
    (a sample that failed at planning) stays in the run it is in."""
    ranges, first, current = [], 0, None
    for i, source in enumerate(batch):
        if source.part is None:
            continue
        if current is not None and source.part.object != current:
            ranges.append((start + first, start + i))
            first = i
        current = source.part.object
    ranges.append((start + first, start + len(batch)))
    return ranges


@contextmanager
def _annotated(ctx: WorkerContext, job: Job, spec: DatasetSpec,
               sources: Iterable[InputSource]) -> Iterator[Iterable[InputSource]]:
    """The sources, each joined to its annotations when the data set has some."""
    if spec.annotations is None:
        yield sources
        return
    with annotation_index(ctx, job, spec) as index:
        yield map(index.join, sources)


def plan_job(ctx: WorkerContext, job_id: str) -> None:
    """Stream a planning job's data set into plan files and planned chunks. A data set that
    does not fit the tenant's quota of queued items (`SALIENCY_MAX_QUEUED_ITEMS`), or that
    cannot be read (its manifest gone, its annotations unusable), fails the job, its planned
    items then listed as cancelled: planning stops as soon as it is known."""
    job = ctx.jobs.get(job_id)
    if job is None or not job.planning or job.is_final:
        return
    if job.finalizing:  # cancelled before its planner ran
        stop_planning(ctx, job)
        return
    spec = job.spec.dataset
    keys = JobKeys(job.tenant, job.id)
    size = ctx.settings.dataset_chunk_size
    limit, quota = ctx.settings.max_dataset_items, ctx.settings.max_queued_items
    ctx.chunks.reset(job_id)
    ctx.jobs.begin_planning(job_id, size)
    skipped = [0]
    sources = _sources(ctx, job, spec, skipped)
    total, batch = 0, []
    over: str | None = None  # why planning stopped short: the quota, or the data set

    def flush() -> None:
        start = total - len(batch)
        ctx.storage.put(keys.plan(start),
                        b"".join(json.dumps(s.to_json()).encode() + b"\n" for s in batch),
                        "application/x-ndjson")
        pipe = ctx.redis.pipeline(transaction=True)
        ctx.chunks.add(pipe, job_id, _chunks(batch, start), ChunkStatus.PLANNED)
        pipe.execute()
        batch.clear()

    try:
        with _annotated(ctx, job, spec, sources) as joined:
            for source in joined:
                if ctx.jobs.stopping(job_id):
                    stop_planning(ctx, job)
                    return
                if total >= limit:
                    raise InputError(f"{spec.field}: the data set has more than {limit} "
                                     "items (SALIENCY_MAX_DATASET_ITEMS)")
                if total >= quota:
                    over = (f"{spec.field}: the data set has more than {quota} items, more "
                            f"than a tenant may have queued (SALIENCY_MAX_QUEUED_ITEMS): it can "
                            f"never run; split it into data sets of at most {quota} items")
                    break
                batch.append(source)
                total += 1
                if len(batch) == size:
                    flush()
                    if ctx.jobs.queued(job.tenant) + total > quota:
                        over = _over_quota(f"at least {total}", quota)
                        break
    except FileNotFoundError as e:
        over = f"{spec.field}: {e}"
    except InputError as e:  # a SpecError too
        over = e.message
    if batch:
        flush()
    error = over or _over_quota(str(total), quota)
    if ctx.jobs.end_planning(job, total, skipped[0], quota, error, fail=over is not None):
        log.warning("job %s failed: %s", job_id, error)
        send_control(ctx.sender, NEXT_PHASE, job_id)
        return
    log.info("job %s planned: %d items in chunks of %d, %d keys skipped", job_id, total, size,
             skipped[0])


def stop_planning(ctx: WorkerContext, job: Job, error: str | None = None) -> None:
    """End a job's planning with nothing planned (the chunks a planner got to are dropped;
    their plan files go with the job) and send for its finalizer: a job left `planning` is
    never finalized. With `error` the job fails with it, unless it was cancelled first."""
    ctx.chunks.reset(job.id)
    if ctx.jobs.end_planning(job, 0, 0, ctx.settings.max_queued_items, error or "",
                             fail=error is not None):
        log.warning("job %s failed: %s", job.id, error)
    send_control(ctx.sender, NEXT_PHASE, job.id)


def _over_quota(items: str, quota: int) -> str:
    return (f"quota: this data set's {items} items and those the tenant already has queued "
            f"exceed the limit of {quota} per tenant (SALIENCY_MAX_QUEUED_ITEMS); submit it "
            "again when some have run")
