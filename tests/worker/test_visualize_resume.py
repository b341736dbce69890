"""A visualization cut by its task's time limit, on a real Redis and local storage: each task
checkpoints the optimization where its time ran out, and the next one restores it, so the
job ends with the picture and the curve of the same job run in one task. The tasks' clock is
the test's own and moves only as the optimization steps, so where each task stops is fixed."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from runtime_testing import TENANT

from shared.storage.keys import JobKeys
from worker.jobs import runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEPS, EVERY = 24, 4
SPEC = {"objective": [{"class": 3}], "steps": STEPS, "seed": 7, "size": 32, "batch": 1,
        "snapshot_every": EVERY, "regularizers": {"jitter": 1, "scale": None, "rotate": None}}
STEP_S, LIMIT_S = 0.3, 1  # half the limit is used: two calls of EVERY steps, then a checkpoint


@pytest.fixture
def stepping_clock(monkeypatch):
    """The visualization tasks' clock, moved `STEP_S` by each call of the optimization."""
    import worker.kinds.visualize.job as visualize_job
    from worker.kinds.visualize import VisualizationRun

    now = [0.0]
    step = VisualizationRun.step

    def timed_step(self, *args, **kwargs):
        now[0] += STEP_S
        return step(self, *args, **kwargs)

    monkeypatch.setattr(VisualizationRun, "step", timed_step)
    monkeypatch.setattr(visualize_job, "time", SimpleNamespace(monotonic=lambda: now[0]))


def _output(rt, job_id: str) -> tuple[np.ndarray, list[float], int]:
    """The item's picture, its curve and how many snapshots it lists."""
    (record,) = rt.ctx.jobs.items(job_id, [0])
    output = record.outputs[0]
    picture = np.load(io.BytesIO(rt.ctx.storage.get(output.files["npy"])))
    return picture, json.loads(rt.ctx.storage.get(output.files["curve"])), len(output.snapshots)


def test_a_visualization_cut_by_its_time_limit_continues_to_the_same_picture(
        runtime, stepping_clock):
    rt = runtime
    whole = rt.visualize_job(**SPEC)
    rt.run(whole)
    cut = rt.visualize_job(**SPEC)
    (chunk,) = rt.ctx.chunks.states(cut)
    checkpoint = JobKeys(TENANT, cut).checkpoint(chunk.start)
    rt.configure(task_time_limit_s=LIMIT_S)
    tasks = 0
    while rt.ctx.chunks.states(cut)[0].state != "done":
        runner.run_chunk(rt.ctx, cut, chunk.start, f"w{tasks}")
        tasks += 1
        done = rt.ctx.jobs.get(cut).to_json()["progress"]["done"]
        if done < STEPS:  # cut short: where it stopped is kept for the next task
            assert done == tasks * 2 * EVERY and rt.ctx.storage.exists(checkpoint)
    assert tasks == STEPS // (2 * EVERY)
    assert not rt.ctx.storage.exists(checkpoint)  # the last task removed it
    runner.advance(rt.ctx, cut)
    job = rt.ctx.jobs.get(cut).to_json()
    assert job["status"] == "succeeded"
    assert (job["progress"]["total"], job["progress"]["done"]) == (STEPS, STEPS)
    got, got_curve, snapshots = _output(rt, cut)
    want, want_curve, _ = _output(rt, whole)
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
    np.testing.assert_allclose(got_curve, want_curve, rtol=1e-5, atol=1e-6)
    assert snapshots == STEPS // EVERY
