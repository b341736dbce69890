"""The job kinds a worker runs, registered by name: each supplies to the runtime
(`worker.runtime.Kind`) how to run a chunk of each phase, what its next phase is, its results
file's rows and its report. No kind imports another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.jobs import Job
from worker.attribution import audit as attribution_audit
from worker.attribution.chunk import run_attribution
from worker.attribution.finalize import attribution_report
from worker.context import WorkerContext
from worker.finalizing import item_results
from worker.runtime import Kind, RunResult
from worker.top_activations import project as top_activations_project
from worker.top_activations.finalize import top_activations_report
from worker.top_activations.scan import run_scan
from worker.visualize_job import run_visualization, visualize_report, visualize_results


def _no_next_phase(ctx: WorkerContext, job: Job) -> bool:
    return False


def _by_phase(*phases: Callable[..., tuple[RunResult | None, bool]]
              ) -> Callable[..., tuple[RunResult | None, bool]]:
    """A kind whose chunks run one function per phase."""
    def run(ctx: WorkerContext, job: Job, *args: Any) -> tuple[RunResult | None, bool]:
        return phases[job.phase](ctx, job, *args)

    return run


KINDS: dict[str, Kind] = {
    "attribution": Kind(_by_phase(run_attribution, attribution_audit.run_audit),
                        attribution_audit.next_phase, attribution_report, item_results),
    "top_activations": Kind(_by_phase(run_scan, top_activations_project.run_projection),
                            top_activations_project.next_phase, top_activations_report,
                            item_results),
    "visualize": Kind(run_visualization, _no_next_phase, visualize_report, visualize_results),
}
