"""The job kinds a worker runs, each as three functions: run one chunk, start the next phase
(if the kind has one), and write the results file and the report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.jobs import Job
from shared.modelspec import ModelSpec
from worker.attribution.audit import run_audit
from worker.attribution.chunk import run_attribution
from worker.attribution.finalize import finalize_attribution
from worker.attribution.finalize import next_phase as attribution_next
from worker.context import WorkerContext
from worker.finalizing import Finalizing
from worker.top_activations.finalize import finalize_top_activations
from worker.top_activations.finalize import next_phase as top_activations_next
from worker.top_activations.project import run_projection
from worker.top_activations.scan import run_scan
from worker.visualize_job import finalize_visualization, run_visualization


@dataclass(frozen=True)
class Kind:
    """`run_chunk(ctx, job, lease, keeper, worker)` returns what to commit and whether the
    chunk yielded; `next_phase(ctx, job)` adds a phase's chunks and says whether it did;
    `finalize(finalizing, model)` writes the results file and the report in checkpointed
    steps (`worker.finalizing`), yielding after each, where its caller may stop."""

    run_chunk: Callable[..., tuple[Any, bool]]
    next_phase: Callable[[WorkerContext, Job], bool]
    finalize: Callable[[Finalizing, ModelSpec | None], Iterator[str]]


def _no_next_phase(ctx: WorkerContext, job: Job) -> bool:
    return False


def _by_phase(*phases: Callable[..., tuple[Any, bool]]) -> Callable[..., tuple[Any, bool]]:
    """A kind whose chunks run one function per phase."""
    def run(ctx: WorkerContext, job: Job, *args: Any) -> tuple[Any, bool]:
        return phases[job.phase](ctx, job, *args)

    return run


KINDS: dict[str, Kind] = {
    "attribution": Kind(_by_phase(run_attribution, run_audit), attribution_next,
                        finalize_attribution),
    "top_activations": Kind(_by_phase(run_scan, run_projection), top_activations_next,
                            finalize_top_activations),
    "visualize": Kind(run_visualization, _no_next_phase, finalize_visualization),
}
