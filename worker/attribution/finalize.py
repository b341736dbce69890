"""Finalizing an attribution job: every item's record, in order, into the results file and
the audit report (`worker.audit.ReportBuilder`), with the clusters and the sanity check of
the audit phase, the measured input dependence of each method, and the suspects' pictures.
Items that never ran (a cancelled or failed job) appear as `cancelled`. The results file has
every output; the report audits each item's leading map per method (of a top-k target, rank
0: the predicted class).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from shared.inputs import InputRef
from shared.itemrecords import find_record
from shared.jobs import Job
from shared.keys import JobKeys
from shared.modelspec import ModelSpec
from shared.records import InputSource, ItemRecord, OutputRecord
from shared.renderings import Rendering
from shared.reports import artifact_ref
from shared.results import rows_of, write_parquet
from shared.shards import read_map
from shared.status import ItemStatus
from worker.context import WorkerContext
from worker.plans import planned_inputs

PAGE = 1000
DEPENDENCE_SAMPLE = 64


def _unrun(index: int, source: InputSource) -> ItemRecord:
    return ItemRecord(index=index, status=ItemStatus.CANCELLED, input=source.name,
                      id=source.id, error="not run: the job ended first")


def _item_records(ctx: WorkerContext, job: Job) -> Iterator[ItemRecord]:
    for start in range(0, job.total, PAGE):
        stop = min(start + PAGE, job.total)
        records = ctx.jobs.items(job.id, list(range(start, stop)))
        sources = None
        for offset, record in enumerate(records):
            if record is None:
                sources = sources or ctx.jobs.input_range(job.id, start, stop)
                record = _unrun(start + offset, sources[offset])
            yield record


def _segment_records(ctx: WorkerContext, job: Job) -> Iterator[ItemRecord]:
    covered = 0
    for segment in [*(s for s in ctx.chunks.segments(job.id) if s.rows), None]:
        gap_end = job.total if segment is None else segment.start
        while covered < gap_end:
            stop = min(gap_end, covered - covered % job.plan_chunk + job.plan_chunk)
            for offset, source in enumerate(planned_inputs(ctx, job, covered, stop)):
                yield _unrun(covered + offset, source)
            covered = stop
        if segment is None:
            break
        for line in ctx.storage.get(segment.rows).splitlines():
            yield ItemRecord.from_json(json.loads(line))
        covered = segment.stop


def records(ctx: WorkerContext, job: Job) -> Iterator[ItemRecord]:
    """Every item's record in index order, the unrun ones as `cancelled`."""
    if job.layout == "items":
        return _item_records(ctx, job)
    return _segment_records(ctx, job)


def _map(ctx: WorkerContext, output: OutputRecord) -> np.ndarray | None:
    """An output's raw map, from its shard or its `.npy` file (None if neither was kept)."""
    if output.map is not None:
        return read_map(ctx.storage, output.map.shard, output.position, output.map.row)
    if "npy" in output.files:
        return np.load(io.BytesIO(ctx.storage.get(output.files["npy"])))
    return None


class _Audit:
    """The report's inputs gathered while the records stream past."""

    def __init__(self, ctx: WorkerContext, job: Job, model: ModelSpec | None) -> None:
        from worker.audit import ReportBuilder

        self.ctx, self.job, self.model = ctx, job, model
        side = model.preprocessing.input_size if model else 0
        self.builder = ReportBuilder(input_size=side,
                                     class_names=model.class_names if model else None)
        self.samples: dict[int, list[tuple[OutputRecord, int]]] = {}

    def add(self, record: ItemRecord) -> None:
        class_name = self.model.class_name if self.model else (lambda _i: None)
        for row in rows_of(record, class_name):
            self.builder.add(row)
        for out in record.outputs:
            if not out.leading:
                continue  # a lower top-k rank: not the predicted class's map
            sample = self.samples.setdefault(out.position, [])
            if len(sample) < DEPENDENCE_SAMPLE and record.prediction is not None:
                sample.append((out, record.prediction.cls))

    def _dependence(self) -> dict[int, Any]:
        from worker.audit import input_dependence

        result = {}
        for position, sample in self.samples.items():
            maps = [(m, cls) for out, cls in sample if (m := _map(self.ctx, out)) is not None]
            if len(maps) >= 2:
                result[position] = input_dependence([m for m, _ in maps],
                                                    [c for _, c in maps],
                                                    sample[0][0].method)
        return result

    def _clusters(self) -> dict[tuple[int, int], Any]:
        from worker.attribution.audit import PLAN, clusters_name, load_clustering

        keys = JobKeys(self.job.tenant, self.job.id)
        try:
            tasks = json.loads(self.ctx.storage.get(keys.artifact(PLAN)))
        except FileNotFoundError:
            return {}
        out = {}
        for task in tasks:
            if "group" in task:
                position, cls = task["group"]
                try:
                    data = self.ctx.storage.get(keys.artifact(clusters_name(position, cls)))
                except FileNotFoundError:
                    continue  # a cancelled job's group that was not clustered
                out[(position, cls)] = load_clustering(data)
        return out

    def _sanity(self):
        from worker.attribution.audit import SANITY

        try:
            data = json.loads(self.ctx.storage.get(
                JobKeys(self.job.tenant, self.job.id).artifact(SANITY)))
        except FileNotFoundError:
            return None
        return _Stored(data)

    def _overlay(self, index: int, position: int) -> bytes:
        from worker.attribution.outputs import region
        from worker.audit import suspect_overlay_png
        from worker.inputs import load_input
        from worker.models import display_image
        from worker.refs import ref_source

        ctx = self.ctx
        record = find_record(ctx.jobs, ctx.chunks, ctx.storage, self.job, index)
        out = next((o for o in record.outputs if o.position == position and o.leading),
                   None) if record else None
        if out is None:
            raise LookupError(f"item {index}: no output {position}")
        loaded = load_input(self.ctx, self.job.tenant, self.model, index,
                            ref_source(self.ctx, self.job, InputRef("item", index)))
        values = _map(self.ctx, out)
        if loaded.error is not None or values is None:
            raise LookupError(f"item {index}: no picture or map to draw")
        rgb = display_image(loaded.x, self.model.preprocessing)
        return suspect_overlay_png(rgb, values, region(loaded, self.model),
                                   Rendering.of(self.job.spec, out.params, out.grid))

    def build(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        def overlay(index: int, position: int) -> bytes:
            try:
                return self._overlay(index, position)
            except LookupError:
                from shared.render import encode_png

                return encode_png(np.full((8, 8, 3), 128, dtype=np.uint8))

        report = self.builder.build(clusters=self._clusters(),
                                    input_dependence=self._dependence(),
                                    sanity=self._sanity(),
                                    overlay=overlay if self.model else None)
        return report.data, report.pictures


class _Stored:
    """A result written by an audit chunk, as JSON (what the report builder asks of it)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


def _referenced(data: Any, pictures: dict[str, bytes]) -> Any:
    """The report with each picture's name turned into an artifact reference."""
    if isinstance(data, dict):
        return {k: _referenced(v, pictures) for k, v in data.items()}
    if isinstance(data, list):
        return [_referenced(v, pictures) for v in data]
    if isinstance(data, str) and data in pictures:
        return artifact_ref(data)
    return data


def next_phase(ctx: WorkerContext, job: Job) -> bool:
    """After the items, the audit's clustering and sanity check (once); then nothing."""
    from worker.attribution.audit import start_audit

    return job.phase == 0 and not job.finalizing and start_audit(ctx, job)


def finalize_attribution(ctx: WorkerContext, job: Job, model: ModelSpec | None) -> None:
    """Write the results file and the report of an attribution job."""
    keys = JobKeys(job.tenant, job.id)
    class_name = model.class_name if model else (lambda _i: None)
    audit = _Audit(ctx, job, model)

    def feed() -> Iterator[ItemRecord]:
        for record in records(ctx, job):
            audit.add(record)
            yield record

    with tempfile.TemporaryFile() as out:
        write_parquet(feed(), out, class_name)
        out.seek(0)
        ctx.storage.put_stream(keys.results("parquet"), out, "application/vnd.apache.parquet")
    data, pictures = audit.build()
    for name, png in pictures.items():
        ctx.storage.put(keys.artifact(name), png, "image/png")
    data = _referenced(data, pictures)
    data["spec"] = {"methods": job.spec.get("methods"), "target": job.spec.get("target")}
    ctx.storage.put(keys.report, json.dumps(data).encode(), "application/json")
