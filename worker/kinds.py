"""The job kinds a worker runs, each as three functions: run one chunk, start the next phase
(if the kind has one), and write the results file and the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.jobs import Job
from shared.modelspec import ModelSpec
from worker.attribution.chunk import run_attribution
from worker.attribution.finalize import finalize_attribution
from worker.context import WorkerContext


def _single_phase(ctx: WorkerContext, job: Job) -> bool:
    return False


@dataclass(frozen=True)
class Kind:
    """`run_chunk(ctx, job, lease, keeper, worker)` returns what to commit and whether the
    chunk yielded; `next_phase(ctx, job)` adds a phase's chunks and says whether it did;
    `finalize(ctx, job, model)` writes the results file and the report."""

    run_chunk: Callable[..., tuple[Any, bool]]
    next_phase: Callable[[WorkerContext, Job], bool]
    finalize: Callable[[WorkerContext, Job, ModelSpec | None], None]


KINDS: dict[str, Kind] = {
    "attribution": Kind(run_attribution, _single_phase, finalize_attribution),
}
