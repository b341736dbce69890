"""Where a chunk's results go, and when they become visible.

Records go through the layout's record sink (`shared.state.itemlayout`). Where it publishes each
record as it is added (upload and inline jobs), `ItemSink` writes each item's files from the
render pool beside the model: a result is visible at once. Where it publishes at the commit
(data-set jobs), `ShardSink` gathers the segment's maps into one shard, written when the run
ends beside the rows file: two objects per segment, whatever its size. Both keep a 32×32
thumbnail of every map, written as one file per run, which is all the audit's clustering
reads: of a top-k target, the map of rank 0 (the predicted class) alone, since the clustering
groups maps by predicted class. Every write is fenced by the chunk's lease token.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from shared.results.records import MapRef, OutputRecord
from shared.spec.job import AttributionSpec
from shared.spec.methods import MethodSpec
from shared.spec.model import ModelSpec
from shared.state.chunks import Lease, Segment
from shared.state.jobs import Job
from shared.storage.keys import JobKeys
from shared.storage.shards import ShardWriter
from worker.jobs.context import WorkerContext
from worker.jobs.inputs import Loaded
from worker.jobs.metrics import IMAGES
from worker.jobs.retry import retrying, within
from worker.jobs.runtime import RunResult
from worker.kinds.attribution import outputs
from worker.kinds.attribution.audit import thumbnail


class _Sink:
    """What both sinks share: the job, the lease, the thumbnails, the retried writes."""

    def __init__(self, ctx: WorkerContext, job: Job, lease: Lease, spec: AttributionSpec,
                 methods: list[MethodSpec], model: ModelSpec, worker: str | None) -> None:
        self.ctx, self.job, self.lease, self.spec = ctx, job, lease, spec
        self.methods, self.model, self.worker = methods, model, worker
        self.keys = JobKeys(job.tenant, job.id)
        self.side = model.preprocessing.input_size
        self.thumbs = ShardWriter("float16")
        self.records = ctx.layout(job).sink(lease, within(ctx.settings.retry_budget_s))

    def _retry(self, fn, what: str):
        return retrying(fn, self.ctx.settings.retry_budget_s, what)

    def _outputs(self, item: Loaded, result: Any, coverage: dict[int, Any], kinds, map_ref):
        """The item's output records, writing the files of `kinds` (and the thumbnails)."""
        item_region = outputs.region(item, self.model, outputs.object_class(
            self.spec.target, item.label, result.predicted_class))
        records = []
        for amap in result.maps:
            if not amap.rank:
                self.thumbs.add(amap.position, item.index, thumbnail(amap.values))
            method = self.methods[amap.position]
            drawing = outputs.rendering(self.spec, method, amap)
            files, drawn = self._retry(lambda amap=amap, drawing=drawing: outputs.write_files(
                self.ctx.storage, self.keys, drawing, self.model, item, amap, kinds),
                f"writing item {item.index}'s files") if kinds else ({}, {})
            records.append(outputs.output_record(
                amap, method, coverage.get(amap.position), item_region, self.side, files,
                map_ref(amap) if map_ref else None,
                outputs.colorbars(drawing, amap.values, self.spec.outputs, drawn)))
        return records, outputs.baseline(item_region, self.model)

    def _write_thumbs(self) -> str | None:
        if not len(self.thumbs):
            return None
        key = self.keys.thumbs(self.lease.start, self.lease.token)
        with tempfile.TemporaryFile() as out:
            self.thumbs.write(out)

            def upload() -> None:
                out.seek(0)
                self.ctx.storage.put_stream(key, out, "application/octet-stream")

            self._retry(upload, "writing thumbnails")
        return key


class ItemSink(_Sink):
    """Records each finished item at once (v1 layout: files per item, records in Redis)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pending: set[Future] = set()

    def fail(self, item: Loaded, message: str) -> None:
        self.records.add(outputs.failed(item, message, self.worker))
        IMAGES.labels("failed").inc()

    def add(self, item: Loaded, result: Any, coverage: dict[int, Any]) -> None:
        self.pending.add(self.ctx.renderers.submit(self._store, item, result, coverage))
        self._collect(2 * self.ctx.settings.batch_size)

    def _store(self, item: Loaded, result: Any, coverage: dict[int, Any]) -> None:
        records, base = self._outputs(item, result, coverage, self.spec.outputs, None)
        self.records.add(outputs.succeeded(item, self.model, result, records, self.worker,
                                           base))
        IMAGES.labels("succeeded").inc()

    def _collect(self, keep: int) -> None:
        while len(self.pending) > keep:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            for fut in done:
                fut.result()

    def finish(self, upto: int) -> RunResult:
        self._collect(0)
        thumbs = self._write_thumbs()
        self.thumbs.close()
        segment = Segment(self.lease.start, upto, self.lease.token, None, None, thumbs) if (
            thumbs) else None
        return RunResult(upto, segment)

    def abandon(self) -> None:
        for fut in self.pending:
            fut.cancel()
        wait(self.pending)  # no render thread may still write to the thumbnails
        self.thumbs.close()


class ShardSink(_Sink):
    """Gathers a segment's maps into one shard, written with its records when the run ends."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.shard_key = self.keys.shard(self.lease.start, self.lease.token)
        self.writer = ShardWriter(self.spec.map_dtype)

    def fail(self, item: Loaded, message: str) -> None:
        self.records.add(outputs.failed(item, message, self.worker))
        IMAGES.labels("failed").inc()

    def add(self, item: Loaded, result: Any, coverage: dict[int, Any]) -> None:
        def map_ref(amap) -> MapRef:
            return MapRef(self.shard_key, self.writer.add(amap.position, item.index,
                                                          amap.values, amap.rank))

        records: list[OutputRecord]
        records, base = self._outputs(item, result, coverage, self.spec.write, map_ref)
        self.records.add(outputs.succeeded(item, self.model, result, records, self.worker,
                                           base))
        IMAGES.labels("succeeded").inc()

    def finish(self, upto: int) -> RunResult:
        if upto <= self.lease.start:
            self.abandon()
            return RunResult(upto)
        shard_key = self.shard_key if len(self.writer) else None
        if shard_key is not None:
            with tempfile.TemporaryFile() as shard:
                self.writer.write(shard)

                def upload() -> None:
                    shard.seek(0)
                    self.ctx.storage.put_stream(shard_key, shard, "application/octet-stream")

                self._retry(upload, "writing a shard")
        recorded = self.records.finish(upto)
        thumbs = self._write_thumbs()
        self.abandon()
        segment = Segment(self.lease.start, upto, self.lease.token, shard_key, recorded.rows,
                          thumbs)
        return RunResult(upto, segment, recorded.done, recorded.failed, recorded.first_error)

    def abandon(self) -> None:
        self.writer.close()
        self.thumbs.close()
