"""A finalizer in checkpointed steps, so that what one finalizer wrote survives it.

A finalizer holds the job's control lease. It reads every item's record in order from the
job's layout (`shared.state.itemlayout`; an item the job's end cut short is `cancelled`), writes
them as the kind's rows (`Kind.results`) into the results file in parts of about
`SALIENCY_RESULTS_PART_ROWS` rows (each one Parquet object, cut after an item), merges them
into the one results file, then writes its kind's report part by part (`Kind.report`), and
records each step in the job's checkpoint (`JobStore.record_step`, only under its lease's
token). A finalizer that dies, or that stops after half the task's time limit, leaves the
rest to the next one, which resumes after the last recorded step. The job's chunks are fenced
before the first step, so its records no longer change: a step done twice (by a finalizer
that was taken over) writes the same objects again.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from shared.results.records import ItemRecord
from shared.results.table import SCHEMA, merge_parquet, rows_of, write_rows
from shared.spec.model import ModelSpec
from shared.state.chunks import Fenced
from shared.state.jobs import Job
from shared.storage.interface import Storage
from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.jobs.runtime import Kind

RESULTS = "results"  # the checkpoint's step: the results file is written
REPORT = "report"  # the checkpoint's step: the report is written (the last step)
ROWS = "rows"  # the checkpoint's field: the items whose rows are in parts
PART = "part:"  # the checkpoint's fields: part:<start> -> its stop


@dataclass
class Finalizing:
    """One finalizer's hold on a job: its control token and the steps recorded so far."""

    ctx: WorkerContext
    job: Job
    token: int
    done: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, ctx: WorkerContext, job: Job, token: int) -> Finalizing:
        return cls(ctx, job, token, ctx.jobs.checkpoint(job.id))

    @property
    def keys(self) -> JobKeys:
        return JobKeys(self.job.tenant, self.job.id)

    def has(self, step: str) -> bool:
        return step in self.done

    def record(self, **steps: str) -> None:
        """Record steps as done; `Fenced` if another finalizer has taken the job over."""
        if not self.ctx.jobs.record_step(self.job.id, self.token, steps):
            raise Fenced(f"job {self.job.id}: its finalizer was taken over")
        self.done.update(steps)

    def parts(self) -> list[int]:
        """The starts of the parts written, in item order."""
        return sorted(int(name[len(PART):]) for name in self.done if name.startswith(PART))

    def records(self, start: int = 0) -> Iterator[ItemRecord]:
        """Every item's record in index order from item `start` on, as the job ended: one that
        never ran, or that stopped part-way, is `cancelled`."""
        return (r.ended_unfinished() for r in self.ctx.layout(self.job).records(start))

    def write_report(self, report: dict[str, Any]) -> str:
        """Write the report, the last step; returns the step's name."""
        self.ctx.storage.put(self.keys.report, json.dumps(report).encode(), "application/json")
        self.record(**{REPORT: "1"})
        return REPORT

    def delete_parts(self) -> None:
        """Once the job is final: its parts are merged into the results file."""
        for start in self.parts():
            self.ctx.storage.delete(self.keys.results_part(start))


@dataclass(frozen=True)
class Results:
    """A kind's results file: the rows of one item's record, and their columns."""

    rows: Callable[[ItemRecord], Iterable[dict[str, Any]]]
    schema: pa.Schema = SCHEMA


def item_results(f: Finalizing, model: ModelSpec | None) -> Results:
    """One row per item × output (`shared.results.table.SCHEMA`), class names from the model."""
    class_name = model.class_name if model else (lambda _i: None)
    return Results(lambda record: rows_of(record, class_name))


def finalizer_steps(f: Finalizing, kind: Kind, model: ModelSpec | None) -> Iterator[str]:
    """A job's finalizer: the steps not recorded yet, yielding each one's name."""
    yield from write_results(f, kind.results(f, model))
    if not f.has(REPORT):
        yield from kind.report(f, model)


def put_parquet(storage: Storage, key: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Store the Parquet file `write` writes (spooled through a temporary file)."""
    with tempfile.TemporaryFile() as out:
        write(out)
        out.seek(0)
        storage.put_stream(key, out, "application/vnd.apache.parquet")


def write_results(f: Finalizing, results: Results) -> Iterator[str]:
    """The results file, in steps: the parts not written yet, then the merge."""
    if f.has(RESULTS):
        return
    start = int(f.done.get(ROWS, 0))
    part: list[ItemRecord] = []
    rows = 0
    for record in f.records(start) if start < f.job.total else ():
        part.append(record)
        rows += max(1, len(record.outputs))  # a failed item has one row
        if rows >= f.ctx.settings.results_part_rows:
            yield _write_part(f, start, part, results)
            start, part, rows = record.index + 1, [], 0
    if part:
        yield _write_part(f, start, part, results)
    put_parquet(f.ctx.storage, f.keys.results("parquet"), lambda out: merge_parquet(
        (io.BytesIO(f.ctx.storage.get(f.keys.results_part(s))) for s in f.parts()), out,
        results.schema))
    f.record(**{RESULTS: "1"})
    yield RESULTS


def _write_part(f: Finalizing, start: int, records: list[ItemRecord], results: Results) -> str:
    """Write the rows of `records` (items `start` on) as one part, and record it."""
    stop = records[-1].index + 1
    put_parquet(f.ctx.storage, f.keys.results_part(start), lambda out: write_rows(
        (row for record in records for row in results.rows(record)), out, results.schema))
    f.record(**{f"{PART}{start}": str(stop), ROWS: str(stop)})
    return f"rows of items [{start}, {stop})"


def part_rows(f: Finalizing) -> Iterator[dict[str, Any]]:
    """The rows of the results file, in order, read back from its parts (one at a time)."""
    for start in f.parts():
        table = pq.read_table(io.BytesIO(f.ctx.storage.get(f.keys.results_part(start))))
        yield from table.to_pylist()
