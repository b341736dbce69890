"""The job kinds a worker runs, registered by name: each supplies to the runtime
(`worker.jobs.runtime.Kind`) how to run a chunk of each phase, what its next phase is, its results
file's rows and its report. No kind imports another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.state.jobs import Job
from worker.jobs.context import WorkerContext
from worker.jobs.finalizing import item_results
from worker.jobs.runtime import Kind, RunResult
from worker.kinds.attribution import audit_phase as attribution_audit
from worker.kinds.attribution.chunk import run_attribution
from worker.kinds.attribution.finalize import attribution_report
from worker.kinds.top_activations import project as top_activations_project
from worker.kinds.top_activations.finalize import top_activations_report
from worker.kinds.top_activations.scan import run_scan
from worker.kinds.visualize.job import run_visualization, visualize_report, visualize_results


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
