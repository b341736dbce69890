"""Reading items' records back, whichever layout their job has: Redis for upload and inline
jobs, the rows file of its committed segment for data-set jobs; and their inputs, from the
job's input list or its plan files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from shared.chunks import Chunks, Segment
from shared.jobs import Job
from shared.jobstore import JobStore
from shared.keys import JobKeys
from shared.records import InputSource, ItemRecord
from shared.status import ItemStatus
from shared.storage import Storage

PAGE = 1000  # records read from Redis at a time


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


def planned_inputs(storage: Storage, job: Job, start: int, stop: int) -> list[InputSource]:
    """The inputs `start`..`stop` of a planned data-set job (from one plan file)."""
    size = job.plan_chunk
    first = start - start % size
    lines = storage.get(JobKeys(job.tenant, job.id).plan(first)).splitlines()
    return [InputSource.from_json(json.loads(line)) for line in lines[start - first:stop - first]]


def inputs(jobs: JobStore, storage: Storage, job: Job, start: int, stop: int
           ) -> list[InputSource]:
    """The inputs `start`..`stop` of a job of either layout (a data-set job's within one plan
    file)."""
    if job.layout == "items":
        return jobs.input_range(job.id, start, stop)
    return planned_inputs(storage, job, start, stop)


def unrun(index: int, source: InputSource) -> ItemRecord:
    """The record of an item that never ran: its job ended first."""
    return ItemRecord(index=index, status=ItemStatus.CANCELLED, input=source.name,
                      id=source.id, error="not run: the job ended first")


def _item_records(jobs: JobStore, job: Job, start: int) -> Iterator[ItemRecord]:
    for first in range(start, job.total, PAGE):
        stop = min(first + PAGE, job.total)
        records = jobs.items(job.id, list(range(first, stop)))
        sources = None
        for offset, record in enumerate(records):
            if record is None:
                sources = sources or jobs.input_range(job.id, first, stop)
                record = unrun(first + offset, sources[offset])
            yield record


def _segment_records(chunks: Chunks, storage: Storage, job: Job, start: int
                     ) -> Iterator[ItemRecord]:
    covered = start
    segments = [s for s in chunks.segments(job.id) if s.rows and s.stop > start]
    for segment in [*segments, None]:
        gap_end = job.total if segment is None else segment.start
        while covered < gap_end:
            stop = min(gap_end, covered - covered % job.plan_chunk + job.plan_chunk)
            for offset, source in enumerate(planned_inputs(storage, job, covered, stop)):
                yield unrun(covered + offset, source)
            covered = stop
        if segment is None:
            break
        for line in storage.get(segment.rows).splitlines():
            record = ItemRecord.from_json(json.loads(line))
            if record.index >= covered:  # from `start` on, in a segment it falls within
                yield record
        covered = segment.stop


def all_records(jobs: JobStore, chunks: Chunks, storage: Storage, job: Job, start: int = 0
                ) -> Iterator[ItemRecord]:
    """Every item's record in index order from item `start` on, the unrun ones as
    `cancelled`."""
    if job.layout == "items":
        return _item_records(jobs, job, start)
    return _segment_records(chunks, storage, job, start)
