"""Where a job's items live, as one type with two implementations.

`RedisItems` (upload, inline and visualize jobs): the inputs in a Redis list, each item's
record in a Redis hash, written as the item finishes. `PlannedItems` (data-set jobs): the
inputs in plan files of `plan_chunk` items, the records in one rows file per committed
segment (its maps in a shard beside it). Both read inputs by range, one record, or every
record in order (an item that never ran made by `unrun`, here alone), and give each lease a
`RecordSink` that publishes its items' records. `Stores.layout(job)` picks the job's.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from shared.results.records import InputSource, ItemRecord
from shared.spec.job import KIND_SPECS
from shared.state.chunks import Chunks, Fenced, Lease, Segment
from shared.state.jobs import Job
from shared.state.jobschema import ItemsLayout
from shared.state.jobstore import JobStore
from shared.status import ItemStatus
from shared.storage.interface import Storage
from shared.storage.keys import JobKeys

PAGE = 1000  # records read from Redis at a time
T = TypeVar("T")
Retry = Callable[[Callable[[], T], str], T]  # run a write, retrying transient errors
Rows = Callable[[Storage, str], dict[int, ItemRecord]]  # a rows file read (a cache may)


def unrun(index: int, source: InputSource) -> ItemRecord:
    """The record of an item that never ran: its job ended first."""
    return ItemRecord(index=index, status=ItemStatus.CANCELLED, input=source.name,
                      id=source.id, error="not run: the job ended first")


def read_rows(storage: Storage, key: str) -> dict[int, ItemRecord]:
    """A segment's records by item index."""
    return {r.index: r for r in _parse_rows(storage.get(key))}


def _parse_rows(data: bytes) -> Iterator[ItemRecord]:
    return (ItemRecord.from_json(json.loads(line)) for line in data.splitlines())


@dataclass(frozen=True)
class Recorded:
    """What a sink published for a run: its rows file (if any), and the counts and first
    error the chunk's commit adds to the job (zero where each record was counted as it was
    written)."""

    rows: str | None = None
    done: int = 0
    failed: int = 0
    first_error: str | None = None


class RecordSink(ABC):
    """Publishes the records of one lease's items; `Fenced` once the lease is taken over."""

    @abstractmethod
    def add(self, record: ItemRecord) -> None:
        """Publish one item's record, or keep it for `finish`."""

    @abstractmethod
    def finish(self, upto: int) -> Recorded:
        """The records of the items before `upto` are published."""


class ItemLayout(ABC):
    """Where one job's inputs and item records are read and written; `at_commit` if a run's
    records are published when it commits (else each as it is added)."""

    at_commit: bool

    def __init__(self, jobs: JobStore, chunks: Chunks, storage: Storage, job: Job) -> None:
        self.jobs, self.chunks, self.storage, self.job = jobs, chunks, storage, job

    @property
    @abstractmethod
    def page_size(self) -> int:
        """How many inputs one read of `inputs` may return (one page, or one plan file)."""

    @abstractmethod
    def inputs(self, start: int, stop: int) -> list[InputSource]:
        """The job's inputs `start`..`stop` (within one `page_size` page)."""

    @abstractmethod
    def record(self, index: int) -> ItemRecord | None:
        """One item's record (None while it has none)."""

    @abstractmethod
    def records(self, start: int = 0) -> Iterator[ItemRecord]:
        """Every item's record in index order from item `start` on, the unrun ones as
        `cancelled` (`unrun`)."""

    @abstractmethod
    def page(self, start: int, stop: int) -> list[tuple[InputSource | None, ItemRecord | None]]:
        """Items `start`..`stop`: each one's record, and what names it where it has none."""

    @abstractmethod
    def unfinished(self, start: int, stop: int) -> list[int]:
        """The items `start`..`stop` whose records are not published yet."""

    @abstractmethod
    def sink(self, lease: Lease, retry: Retry) -> RecordSink:
        """The sink of a run of `lease`, its writes made through `retry`."""

    def names(self, start: int, stop: int) -> list[InputSource]:
        """What names items `start`..`stop`: their inputs, or the kind's own items (a
        visualization's objective × start)."""
        own = KIND_SPECS[self.job.kind].item_names
        return own(self.job.spec.work, start, stop) if own else self.inputs(start, stop)


class _RedisSink(RecordSink):
    def __init__(self, jobs: JobStore, lease: Lease, retry: Retry) -> None:
        self.jobs, self.lease, self.retry = jobs, lease, retry

    def add(self, record: ItemRecord) -> None:
        if not self.retry(lambda: self.jobs.record_item(self.lease, record),
                          f"recording item {record.index}"):
            raise Fenced(f"job {self.lease.job_id} chunk {self.lease.start}: lease taken over")

    def finish(self, upto: int) -> Recorded:
        return Recorded()  # each record was published, and counted, as it was added


class RedisItems(ItemLayout):
    """Inputs in a Redis list, records in a Redis hash, each published as it finishes."""

    at_commit = False
    page_size = PAGE

    def inputs(self, start: int, stop: int) -> list[InputSource]:
        return self.jobs.input_range(self.job.id, start, stop)

    def record(self, index: int) -> ItemRecord | None:
        return self.jobs.items(self.job.id, [index])[0]

    def records(self, start: int = 0) -> Iterator[ItemRecord]:
        for first in range(start, self.job.total, PAGE):
            stop = min(first + PAGE, self.job.total)
            records = self.jobs.items(self.job.id, list(range(first, stop)))
            sources = None
            for offset, record in enumerate(records):
                if record is None:
                    sources = sources or self.names(first, stop)
                    record = unrun(first + offset, sources[offset])
                yield record

    def page(self, start: int, stop: int) -> list[tuple[InputSource | None, ItemRecord | None]]:
        records = self.jobs.items(self.job.id, list(range(start, stop)))
        return list(zip(self.names(start, stop), records, strict=True))

    def unfinished(self, start: int, stop: int) -> list[int]:
        return self.jobs.unfinished(self.job.id, list(range(start, stop)))

    def sink(self, lease: Lease, retry: Retry) -> RecordSink:
        return _RedisSink(self.jobs, lease, retry)


class _RowsSink(RecordSink):
    def __init__(self, storage: Storage, job: Job, lease: Lease, retry: Retry) -> None:
        self.storage, self.lease, self.retry = storage, lease, retry
        self.key = JobKeys(job.tenant, job.id).rows(lease.start, lease.token)
        self.records: dict[int, ItemRecord] = {}

    def add(self, record: ItemRecord) -> None:
        self.records[record.index] = record

    def finish(self, upto: int) -> Recorded:
        done = [r for i, r in sorted(self.records.items()) if i < upto]
        rows = b"".join(json.dumps(r.to_json()).encode() + b"\n" for r in done)
        self.retry(lambda: self.storage.put(self.key, rows, "application/x-ndjson"),
                   "writing a rows file")
        return Recorded(self.key, sum(r.ok for r in done), sum(not r.ok for r in done),
                        next((r.error for r in done if not r.ok), None))


class PlannedItems(ItemLayout):
    """Inputs in plan files, records in one rows file per committed segment."""

    at_commit = True

    def __init__(self, jobs: JobStore, chunks: Chunks, storage: Storage, job: Job,
                 rows: Rows = read_rows) -> None:
        super().__init__(jobs, chunks, storage, job)
        self.rows = rows

    @property
    def page_size(self) -> int:
        return self.job.plan_chunk

    def inputs(self, start: int, stop: int) -> list[InputSource]:
        first = start - start % self.job.plan_chunk
        lines = self.storage.get(JobKeys(self.job.tenant, self.job.id).plan(first)).splitlines()
        return [InputSource.from_json(json.loads(line))
                for line in lines[start - first:stop - first]]

    def _segment(self, segments: list[Segment], index: int) -> Segment | None:
        return next((s for s in segments if s.rows and s.start <= index < s.stop), None)

    def record(self, index: int) -> ItemRecord | None:
        segment = self._segment(self.chunks.segments(self.job.id), index)
        return self.rows(self.storage, segment.rows).get(index) if segment else None

    def records(self, start: int = 0) -> Iterator[ItemRecord]:
        job, covered = self.job, start
        segments = [s for s in self.chunks.segments(job.id) if s.rows and s.stop > start]
        for segment in [*segments, None]:
            gap_end = job.total if segment is None else segment.start
            while covered < gap_end:
                stop = min(gap_end, covered - covered % job.plan_chunk + job.plan_chunk)
                for offset, source in enumerate(self.names(covered, stop)):
                    yield unrun(covered + offset, source)
                covered = stop
            if segment is None:
                break
            for record in _parse_rows(self.storage.get(segment.rows)):
                if record.index >= covered:  # from `start` on, in a segment it falls within
                    yield record
            covered = segment.stop

    def page(self, start: int, stop: int) -> list[tuple[InputSource | None, ItemRecord | None]]:
        segments = self.chunks.segments(self.job.id)
        plans: dict[int, list[InputSource]] = {}
        out: list[tuple[InputSource | None, ItemRecord | None]] = []
        for index in range(start, stop):
            segment = self._segment(segments, index)
            record = self.rows(self.storage, segment.rows).get(index) if segment else None
            source = None
            if record is None:
                first = index - index % self.job.plan_chunk
                if first not in plans:
                    plans[first] = self.names(first, first + self.job.plan_chunk)
                source = plans[first][index - first]
            out.append((source, record))
        return out

    def unfinished(self, start: int, stop: int) -> list[int]:
        return list(range(start, stop))  # a run publishes nothing until it commits

    def sink(self, lease: Lease, retry: Retry) -> RecordSink:
        return _RowsSink(self.storage, self.job, lease, retry)


def layout_of(jobs: JobStore, chunks: Chunks, storage: Storage, job: Job,
              rows: Rows = read_rows) -> ItemLayout:
    """The layout of `job`'s items (`rows` reads a data-set job's rows files)."""
    if job.layout == ItemsLayout.REDIS:
        return RedisItems(jobs, chunks, storage, job)
    return PlannedItems(jobs, chunks, storage, job, rows)
