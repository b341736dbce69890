"""The runtime's contract with a job kind: what a kind supplies (`Kind`), and what one run of
a chunk hands the runner to commit, whatever its kind (`RunResult`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.spec.model import ModelSpec
from shared.state.chunks import Segment
from shared.state.jobs import Job

if TYPE_CHECKING:
    from worker.jobs.context import WorkerContext
    from worker.jobs.finalizing import Finalizing, Results


@dataclass(frozen=True)
class RunResult:
    """How a run of a chunk ended: the first item it did not do, and what it committed."""

    upto: int
    segment: Segment | None = None
    done: int = 0
    failed: int = 0
    first_error: str | None = None  # the error of the segment's first failed item


@dataclass(frozen=True)
class Kind:
    """What a job kind supplies to the runtime (`worker.jobs.runner`, `worker.jobs.finalizing`).

    `run_chunk(ctx, job, lease, keeper, worker)` runs one lease of the current phase and
    returns what to commit (None: nothing, the job is being finalized) and whether the rest
    yielded to another tenant; `next_phase(ctx, job)` adds a later phase's chunks and says
    whether it did; `results(finalizing, model)` gives the results file's rows and columns;
    `report(finalizing, model)` writes the report in checkpointed steps, yielding after each
    (its last: `Finalizing.write_report`). How a kind's job is planned is its `KindSpec`
    (`shared.spec.job`), which the API reads too."""

    run_chunk: Callable[..., tuple[RunResult | None, bool]]
    next_phase: Callable[[WorkerContext, Job], bool]
    report: Callable[[Finalizing, ModelSpec | None], Iterator[str]]
    results: Callable[[Finalizing, ModelSpec | None], Results]
