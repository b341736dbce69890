"""The audit's thumbnail groups: the 32×32 maps of one (method position, predicted class),
each group stored as its members' ids and their maps, the clustered sample first.

`write_groups` streams the job's thumbnail files once into one scratch file per position
(a row per clustered item, written and read with positioned I/O, so nothing but the item
index arrays stays in memory), then copies each group's rows out block by block: its
seeded sample (`worker.kinds.attribution.audit.spray.sample_order`) and then the rest. `read_group`
gives a clustering chunk the sample and the rest in blocks of `BLOCK` maps, read by range.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from shared.state.jobs import Job
from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.kinds.attribution.audit import MIN_CLASS_ITEMS
from worker.kinds.attribution.audit.spray import group_seed, sample_order

SIDE = 32
ROW = SIDE * SIDE * 2  # bytes of one float16 thumbnail
BLOCK = 4096  # maps copied or assigned at a time (8 MB as float16)


def group_name(position: int, cls: int) -> str:
    """The group's member ids (`ids`, the sample first) and its sample's size (`sampled`)."""
    return f"audit/groups/{position}-{cls}.npz"


def group_maps_name(position: int, cls: int) -> str:
    """The group's thumbnails: raw float16 rows of 32×32, in the order of its ids."""
    return f"audit/groups/{position}-{cls}.f16"


def _thumb_files(ctx: WorkerContext, job: Job) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Each committed run's thumbnails: (position, item indices, K×32×32 float16).

    The maps are as stored, each scaled to a maximum of 1: clustering scales every map to
    mean 1 first, so the stored scale is not needed (and float16 keeps its precision).
    """
    from safetensors.numpy import load

    for segment in ctx.chunks.segments(job.id):
        if not segment.thumbs:
            continue
        tensors = load(ctx.storage.get(segment.thumbs))
        for name, maps in tensors.items():
            if name.startswith("maps."):
                position = int(name.split(".", 1)[1])
                yield position, tensors[f"index.{position}"], maps.astype(np.float16)


def _copy_rows(source: int, slots: np.ndarray, out) -> None:
    """Append the rows at `slots` of the scratch file `source` to `out`, a block at a time."""
    for start in range(0, len(slots), BLOCK):
        out.write(b"".join(os.pread(source, ROW, int(s) * ROW)
                           for s in slots[start:start + BLOCK]))


def _scatter(ctx: WorkerContext, job: Job, slot: np.ndarray, count: int, tmp: str,
             scratch: dict[int, tuple[int, np.ndarray]]) -> None:
    """Write each thumbnail of an item with a `slot` (>= 0) at that row of its position's
    scratch file in `tmp`, noting in `scratch` the file and which of the `count` rows it
    has."""
    for position, items, maps in _thumb_files(ctx, job):
        if position not in scratch:
            fd = os.open(f"{tmp}/{position}", os.O_RDWR | os.O_CREAT, 0o600)
            scratch[position] = (fd, np.zeros(count, dtype=bool))
        fd, filled = scratch[position]
        at = slot[items]
        for k in np.flatnonzero(at >= 0):
            os.pwrite(fd, maps[k].tobytes(), int(at[k]) * ROW)
        filled[at[at >= 0]] = True


def _store_group(ctx: WorkerContext, keys: JobKeys, position: int, cls: int, source: int,
                 slots: np.ndarray, ids: np.ndarray, sampled: int) -> None:
    """One group's thumbnails (rows `slots` of the scratch file `source`) and its ids."""
    with tempfile.TemporaryFile() as out:
        _copy_rows(source, slots, out)
        out.seek(0)
        ctx.storage.put_stream(keys.artifact(group_maps_name(position, cls)), out,
                               "application/octet-stream")
    buf = io.BytesIO()
    np.savez(buf, ids=ids, sampled=sampled)
    ctx.storage.put(keys.artifact(group_name(position, cls)), buf.getvalue(),
                    "application/octet-stream")


def write_groups(ctx: WorkerContext, job: Job, predicted: np.ndarray, classes: list[int],
                 job_seed: int) -> list[dict]:
    """Store the (position, class) groups of at least `MIN_CLASS_ITEMS` maps; their tasks.

    `predicted` holds each item's predicted class (-1: none), `classes` those to cluster.
    """
    keys = JobKeys(job.tenant, job.id)
    indices = np.flatnonzero(np.isin(predicted, classes))  # scratch row r holds item indices[r]
    slot = np.full(len(predicted), -1, dtype=np.int64)
    slot[indices] = np.arange(len(indices))
    by_class = np.argsort(predicted[indices], kind="stable")  # rows by class, then item
    first = np.searchsorted(predicted[indices][by_class], classes)
    last = np.searchsorted(predicted[indices][by_class], classes, side="right")
    scratch: dict[int, tuple[int, np.ndarray]] = {}
    tasks = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _scatter(ctx, job, slot, len(indices), tmp, scratch)
            for position, (fd, filled) in sorted(scratch.items()):
                for cls, a, b in zip(classes, first, last, strict=True):
                    rows = by_class[a:b][filled[by_class[a:b]]]
                    if len(rows) < MIN_CLASS_ITEMS:
                        continue
                    order, sampled = sample_order(len(rows), ctx.settings.spray_sample,
                                                  group_seed(job_seed, position, cls))
                    _store_group(ctx, keys, position, cls, fd, rows[order],
                                 indices[rows[order]], sampled)
                    tasks.append({"group": [position, cls]})
        finally:
            for fd, _ in scratch.values():
                os.close(fd)
    return tasks


def read_group(ctx: WorkerContext, keys: JobKeys, position: int, cls: int
               ) -> tuple[np.ndarray, np.ndarray, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """A group's sample (thumbnails, ids) and its other maps as (ids, thumbnails) blocks."""
    with np.load(io.BytesIO(ctx.storage.get(keys.artifact(group_name(position, cls))))) as z:
        ids, sampled = z["ids"], int(z["sampled"])
    maps_key = keys.artifact(group_maps_name(position, cls))

    def rows(start: int, stop: int) -> np.ndarray:
        data = ctx.storage.get_range(maps_key, start * ROW, stop * ROW)
        return np.frombuffer(data, dtype=np.float16).reshape(-1, SIDE, SIDE)

    rest = ((ids[a:a + BLOCK], rows(a, min(a + BLOCK, len(ids))))
            for a in range(sampled, len(ids), BLOCK))
    return rows(0, sampled), ids[:sampled], rest
