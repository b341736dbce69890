"""Finalizing an attribution job: every item's record, in order, into the results file and
the report. Items that never ran (a cancelled or failed job) appear as `cancelled`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator

from shared.jobs import Job
from shared.keys import JobKeys
from shared.modelspec import ModelSpec
from shared.records import InputSource, ItemRecord
from shared.results import write_parquet
from shared.status import ItemStatus
from worker.context import WorkerContext
from worker.plans import planned_inputs

PAGE = 1000


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
    segments = ctx.chunks.segments(job.id)
    covered = 0
    for segment in [*segments, None]:
        gap_end = job.total if segment is None else segment.start
        while covered < gap_end:
            stop = min(gap_end, covered - covered % job.plan_chunk + job.plan_chunk)
            for offset, source in enumerate(planned_inputs(ctx, job, covered, stop)):
                yield _unrun(covered + offset, source)
            covered = stop
        if segment is None:
            break
        data = ctx.storage.get(segment.rows)
        for line in data.splitlines():
            yield ItemRecord.from_json(json.loads(line))
        covered = segment.stop


def records(ctx: WorkerContext, job: Job) -> Iterator[ItemRecord]:
    """Every item's record in index order, the unrun ones as `cancelled`."""
    if job.layout == "items":
        return _item_records(ctx, job)
    return _segment_records(ctx, job)


def finalize_attribution(ctx: WorkerContext, job: Job, model: ModelSpec | None) -> None:
    """Write the results file and the report of an attribution job."""
    keys = JobKeys(job.tenant, job.id)
    class_name = model.class_name if model else (lambda _i: None)
    with tempfile.TemporaryFile() as out:
        write_parquet(records(ctx, job), out, class_name)
        out.seek(0)
        ctx.storage.put_stream(keys.results("parquet"), out, "application/vnd.apache.parquet")
    report = {"kind": "attribution", "counts": {"total": job.total, "done": job.done,
                                                "failed": job.failed}}
    ctx.storage.put(keys.report, json.dumps(report).encode(), "application/json")
