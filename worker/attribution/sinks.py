"""Where a chunk's results go, and when they become visible.

`ItemSink` (upload and inline jobs) records each item as it is finished, in Redis, and
writes its files from the render pool beside the model: a result is visible at once.
`ShardSink` (data-set jobs) gathers the segment's maps into one shard and its records into
one rows file, written when the run ends: two objects per segment, whatever its size.
Every write is fenced by the chunk's lease token.
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from shared.chunks import Lease, Segment
from shared.jobs import Job
from shared.keys import JobKeys
from shared.modelspec import ModelSpec
from shared.records import ItemRecord, MapRef
from shared.shards import ShardWriter
from shared.specs import AttributionSpec
from worker.attribution import outputs
from worker.context import WorkerContext
from worker.inputs import Loaded
from worker.metrics import IMAGES
from worker.retry import retrying


class Fenced(Exception):
    """The chunk's lease was taken over: this run must not publish anything more."""


@dataclass(frozen=True)
class RunResult:
    """How a run of a chunk ended: the first item it did not do, and what it committed."""

    upto: int
    segment: Segment | None = None
    done: int = 0
    failed: int = 0


class ItemSink:
    """Records each finished item at once (v1 layout: files per item, records in Redis)."""

    def __init__(self, ctx: WorkerContext, job: Job, lease: Lease, spec: AttributionSpec,
                 model: ModelSpec, worker: str | None) -> None:
        self.ctx, self.job, self.lease, self.spec, self.model = ctx, job, lease, spec, model
        self.worker = worker
        self.keys = JobKeys(job.tenant, job.id)
        self.pending: set[Future] = set()

    def _record(self, record: ItemRecord) -> None:
        ok = retrying(lambda: self.ctx.jobs.record_item(self.job.id, record, self.lease.key,
                                                        self.lease.token),
                      self.ctx.settings.retry_budget_s, f"recording item {record.index}")
        if not ok:
            raise Fenced(f"job {self.job.id} chunk {self.lease.start}: lease taken over")

    def fail(self, item: Loaded, message: str) -> None:
        self._record(outputs.failed(item, message, self.worker))
        IMAGES.labels("failed").inc()

    def add(self, item: Loaded, result: Any, coverage: dict[str, Any],
            label_score: float | None) -> None:
        self.pending.add(self.ctx.renderers.submit(self._store, item, result, coverage,
                                                   label_score))
        self._collect(2 * self.ctx.settings.batch_size)

    def _store(self, item: Loaded, result: Any, coverage: dict[str, Any],
               label_score: float | None) -> None:
        records = []
        for position, amap in enumerate(result.maps):
            files = retrying(
                lambda amap=amap, position=position: outputs.write_files(
                    self.ctx.storage, self.keys, self.spec, self.model, item, position,
                    amap.method, amap.values, self.spec.outputs),
                self.ctx.settings.retry_budget_s, f"writing item {item.index}'s outputs")
            records.append(outputs.output_record(amap, position, coverage.get(amap.method),
                                                 files, None, None))
        self._record(outputs.succeeded(item, self.model, result, records, self.worker,
                                       label_score))
        IMAGES.labels("succeeded").inc()

    def _collect(self, keep: int) -> None:
        while len(self.pending) > keep:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            for fut in done:
                fut.result()

    def finish(self, upto: int) -> RunResult:
        self._collect(0)
        return RunResult(upto)

    def abandon(self) -> None:
        for fut in self.pending:
            fut.cancel()


class ShardSink:
    """Gathers a segment's maps and records, and writes them as one shard and one rows file."""

    def __init__(self, ctx: WorkerContext, job: Job, lease: Lease, spec: AttributionSpec,
                 model: ModelSpec, worker: str | None) -> None:
        self.ctx, self.job, self.lease, self.spec, self.model = ctx, job, lease, spec, model
        self.worker = worker
        self.keys = JobKeys(job.tenant, job.id)
        self.shard_key = self.keys.shard(lease.start, lease.token)
        self.rows_key = self.keys.rows(lease.start, lease.token)
        self.writer = ShardWriter(spec.map_dtype)
        self.rows: dict[int, bytes] = {}
        self.done = self.failed = 0

    def _row(self, record: ItemRecord) -> None:
        self.rows[record.index] = json.dumps(record.to_json()).encode() + b"\n"

    def fail(self, item: Loaded, message: str) -> None:
        self._row(outputs.failed(item, message, self.worker))
        self.failed += 1
        IMAGES.labels("failed").inc()

    def add(self, item: Loaded, result: Any, coverage: dict[str, Any],
            label_score: float | None) -> None:
        records = []
        for position, amap in enumerate(result.maps):
            row = self.writer.add(position, item.index, amap.values)
            files = retrying(
                lambda amap=amap, position=position: outputs.write_files(
                    self.ctx.storage, self.keys, self.spec, self.model, item, position,
                    amap.method, amap.values, self.spec.write),
                self.ctx.settings.retry_budget_s, f"writing item {item.index}'s files",
            ) if self.spec.write else {}
            records.append(outputs.output_record(amap, position, coverage.get(amap.method),
                                                 files, MapRef(self.shard_key, row), None))
        self._row(outputs.succeeded(item, self.model, result, records, self.worker,
                                    label_score))
        self.done += 1
        IMAGES.labels("succeeded").inc()

    def finish(self, upto: int) -> RunResult:
        if upto <= self.lease.start:
            self.abandon()
            return RunResult(upto)
        budget = self.ctx.settings.retry_budget_s
        shard_key = self.shard_key if len(self.writer) else None
        if shard_key is not None:
            with tempfile.TemporaryFile() as shard:
                self.writer.write(shard)

                def upload() -> None:
                    shard.seek(0)
                    self.ctx.storage.put_stream(shard_key, shard, "application/octet-stream")

                retrying(upload, budget, "writing a shard")
        rows = b"".join(self.rows[i] for i in sorted(self.rows))
        retrying(lambda: self.ctx.storage.put(self.rows_key, rows, "application/x-ndjson"),
                 budget, "writing a rows file")
        self.abandon()
        segment = Segment(self.lease.start, upto, self.lease.token, shard_key, self.rows_key)
        return RunResult(upto, segment, self.done, self.failed)

    def abandon(self) -> None:
        self.writer.close()
        self.rows.clear()
