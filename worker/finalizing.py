"""A finalizer in checkpointed steps, so that what one finalizer wrote survives it.

A finalizer holds the job's control lease. It writes the results file in parts of about
`SALIENCY_RESULTS_PART_ROWS` rows (each one Parquet object, cut after an item), merges them
into the one results file, then writes its kind's report part by part (`worker.kinds`), and
records each step in the job's checkpoint (`JobStore.record_step`, only under its lease's
token). A finalizer that dies, or that stops after half the task's time limit, leaves the
rest to the next one, which resumes after the last recorded step. The job's chunks are fenced
before the first step, so its records no longer change: a step done twice (by a finalizer
that was taken over) writes the same objects again.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from shared.jobs import Job
from shared.keys import JobKeys
from shared.records import ItemRecord
from shared.results import merge_parquet, write_parquet
from worker.batches import Fenced
from worker.context import WorkerContext

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

    def delete_parts(self) -> None:
        """Once the job is final: its parts are merged into the results file."""
        for start in self.parts():
            self.ctx.storage.delete(self.keys.results_part(start))


Records = Callable[[int], Iterator[ItemRecord]]  # every item's record from an index on


def write_results(f: Finalizing, records: Records, class_name: Callable[[int], Any],
                  ) -> Iterator[str]:
    """The results file, in steps: the parts not written yet, then the merge."""
    if f.has(RESULTS):
        return
    start = int(f.done.get(ROWS, 0))
    part: list[ItemRecord] = []
    rows = 0
    for record in records(start) if start < f.job.total else ():
        part.append(record)
        rows += max(1, len(record.outputs))  # a failed item has one row
        if rows >= f.ctx.settings.results_part_rows:
            yield _write_part(f, start, part, class_name)
            start, part, rows = record.index + 1, [], 0
    if part:
        yield _write_part(f, start, part, class_name)
    with tempfile.TemporaryFile() as out:
        merge_parquet((io.BytesIO(f.ctx.storage.get(f.keys.results_part(s)))
                       for s in f.parts()), out)
        out.seek(0)
        f.ctx.storage.put_stream(f.keys.results("parquet"), out,
                                 "application/vnd.apache.parquet")
    f.record(**{RESULTS: "1"})
    yield RESULTS


def _write_part(f: Finalizing, start: int, records: list[ItemRecord],
                class_name: Callable[[int], Any]) -> str:
    """Write the rows of `records` (items `start` on) as one part, and record it."""
    stop = records[-1].index + 1
    with tempfile.TemporaryFile() as out:
        write_parquet(records, out, class_name)
        out.seek(0)
        f.ctx.storage.put_stream(f.keys.results_part(start), out,
                                 "application/vnd.apache.parquet")
    f.record(**{f"{PART}{start}": str(stop), ROWS: str(stop)})
    return f"rows of items [{start}, {stop})"


def part_rows(f: Finalizing) -> Iterator[dict[str, Any]]:
    """The rows of the results file, in order, read back from its parts (one at a time)."""
    for start in f.parts():
        table = pq.read_table(io.BytesIO(f.ctx.storage.get(f.keys.results_part(start))))
        yield from table.to_pylist()
