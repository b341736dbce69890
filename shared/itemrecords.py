"""Reading an item's record back, whichever layout its job has: Redis for upload and inline
jobs, the rows file of its committed segment for data-set jobs."""

from __future__ import annotations

import json
from collections.abc import Callable

from shared.chunks import Chunks, Segment
from shared.jobs import Job, JobStore
from shared.records import ItemRecord
from shared.storage import Storage


def segment_rows(storage: Storage, key: str) -> dict[int, ItemRecord]:
    """A segment's records by item index."""
    records = (ItemRecord.from_json(json.loads(line)) for line in storage.get(key).splitlines())
    return {r.index: r for r in records}


def segment_of(segments: list[Segment], index: int) -> Segment | None:
    for segment in segments:
        if segment.rows and segment.start <= index < segment.stop:
            return segment
    return None


def find_record(jobs: JobStore, chunks: Chunks, storage: Storage, job: Job, index: int,
                rows: Callable[[Storage, str], dict[int, ItemRecord]] = segment_rows
                ) -> ItemRecord | None:
    """One item's record (None while it has none); `rows` reads a rows file (a cache may)."""
    if job.layout == "items":
        return jobs.items(job.id, [index])[0]
    segment = segment_of(chunks.segments(job.id), index)
    return rows(storage, segment.rows).get(index) if segment else None
