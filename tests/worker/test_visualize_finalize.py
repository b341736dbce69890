"""A `visualize` job's finalizer on a real Redis and local storage: the report's figures of
each curve (`final`, `final_mean`, `best`) against the stored curve, the results file's own
columns, and the job `running` with `progress.finalizing` while its finalizer runs."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from runtime_testing import TENANT

from shared.status import JobStatus
from shared.storage.keys import JobKeys
from worker.jobs import runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEPS = 24  # the tail of final_mean: ceil(5 % of 24) = 2 steps
OBJECTIVES = [{"class": 3}, {"layer": "layer1", "channel": 5}]
SPEC = {"objective": OBJECTIVES, "starts": 2, "steps": STEPS, "size": 32, "batch": 2,
        "snapshot_every": 8, "regularizers": {"jitter": 1, "scale": None, "rotate": None}}
COLUMNS = ["index", "objective", "objective_index", "start", "status", "error", "steps",
           "final", "final_mean", "best", "best_step", "npy"]


def written(rt, job_id: str) -> tuple[dict, list[dict]]:
    keys = JobKeys(TENANT, job_id)
    report = json.loads(rt.ctx.storage.get(keys.report))
    table = pq.read_table(io.BytesIO(rt.ctx.storage.get(keys.results())))
    assert table.column_names == COLUMNS
    return report, table.to_pylist()


@pytest.fixture
def finished(runtime) -> tuple[dict, list[dict], dict[int, list[float]]]:
    """The report, the results' rows and each item's stored curve, of a finished job."""
    job_id = runtime.visualize_job(**SPEC)
    runtime.run(job_id)
    assert runtime.ctx.jobs.get(job_id).status is JobStatus.SUCCEEDED
    report, rows = written(runtime, job_id)
    curves = {}
    for record in runtime.ctx.jobs.items(job_id, list(range(4))):
        curves[record.index] = json.loads(runtime.ctx.storage.get(
            record.outputs[0].files["curve"]))
    return report, rows, curves


def test_each_report_entry_keeps_final_and_adds_the_tail_mean_and_the_best(finished):
    report, _, curves = finished
    assert [e["index"] for e in report["items"]] == [0, 1, 2, 3]
    for entry in report["items"]:
        curve = np.array(curves[entry["index"]])
        assert entry["curve"] == curves[entry["index"]] and len(curve) == STEPS
        assert entry["final"] == curve[-1]
        assert entry["final_mean"] == pytest.approx(curve[-2:].mean(), rel=1e-12)
        assert entry["best"] == {"value": curve.max(), "step": int(curve.argmax()) + 1}


def test_the_results_file_has_a_row_per_item_with_visualizes_own_columns(finished):
    report, rows, curves = finished
    entries = {e["index"]: e for e in report["items"]}
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    for row in rows:
        index = row["index"]
        objective = OBJECTIVES[index // 2]
        assert json.loads(row["objective"]) == objective
        assert (row["objective_index"], row["start"]) == (index // 2, index % 2)
        assert (row["status"], row["error"], row["steps"]) == ("succeeded", None, STEPS)
        entry = entries[index]
        assert (row["final"], row["final_mean"]) == (entry["final"], entry["final_mean"])
        assert (row["best"], row["best_step"]) == (entry["best"]["value"], entry["best"]["step"])
        assert row["npy"].endswith(f"/outputs/{index}/visualize-0.npy")


def test_items_that_never_ran_have_a_row_without_figures(runtime):
    job_id = runtime.visualize_job(**SPEC)
    first = min(c.start for c in runtime.ctx.chunks.states(job_id))
    runner.run_chunk(runtime.ctx, job_id, first, "w")  # items 0 and 1; then the job is cancelled
    assert runtime.ctx.jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    runner.advance(runtime.ctx, job_id)
    report, rows = written(runtime, job_id)
    assert [e["index"] for e in report["items"]] == [0, 1]
    assert [(r["status"], r["steps"]) for r in rows] == [
        ("succeeded", STEPS), ("succeeded", STEPS), ("cancelled", 0), ("cancelled", 0)]
    for row in rows[2:]:
        assert row["error"] and row["final"] is None and row["best_step"] is None


def test_the_job_is_running_and_finalizing_while_its_finalizer_runs(runtime):
    rt = runtime
    job_id = rt.visualize_job(**SPEC)
    rt.run_chunks(job_id)
    limit = rt.ctx.settings.task_time_limit_s
    rt.configure(task_time_limit_s=0)  # the finalizer stops after its first step, unfinished
    runner.advance(rt.ctx, job_id)
    job = rt.ctx.jobs.get(job_id).to_json()
    assert job["status"] == "running" and job["progress"]["finalizing"] is True
    assert job["progress"]["done"] == job["progress"]["total"] == 4 * STEPS
    rt.configure(task_time_limit_s=limit)
    runner.advance(rt.ctx, job_id)
    job = rt.ctx.jobs.get(job_id).to_json()
    assert job["status"] == "succeeded" and job["progress"]["finalizing"] is False
