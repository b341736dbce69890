"""The finalizer in checkpointed steps, on a real Redis and local storage: one taken over
between any two steps resumes where it stopped, redoes nothing, and writes what a single
uninterrupted finalizer writes."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from e2e.helpers import image_bytes
from runtime_testing import TENANT

from shared.state.chunks import Fenced
from shared.state.jobschema import RecordKeys
from shared.status import JobStatus
from shared.storage.keys import JobKeys
from worker.jobs.finalizing import Finalizing, finalizer_steps
from worker.jobs.runner import finalize
from worker.kinds import KINDS

ITEMS = 7  # the last one missing: it fails, with one row of its own


def _dataset(rt) -> dict:
    for i in range(ITEMS - 1):
        (rt.root / f"{i}.png").write_bytes(image_bytes(i, size=32))
    lines = [{"uri": f"{i}.png", "label": i % 3} for i in range(ITEMS)]
    return {"manifest": rt.manifest("m.jsonl", lines)}


def _written(rt, job_id: str) -> tuple[list[dict], dict, dict[str, bytes]]:
    """The results' rows, the report and its pictures, the job's id replaced by `JOB`."""
    keys = JobKeys(TENANT, job_id)

    def plain(value):
        return json.loads(json.dumps(value).replace(job_id, "JOB"))

    rows = pq.read_table(io.BytesIO(rt.ctx.storage.get(keys.results()))).to_pylist()
    report = json.loads(rt.ctx.storage.get(keys.report))
    head = keys.artifact("x")[:-1]
    pictures = {key[len(head):]: rt.ctx.storage.get(key)
                for key in rt.ctx.storage.list(head) if key.endswith(".png")}
    return plain(rows), plain(report), pictures


def test_a_finalizer_taken_over_after_every_step_writes_what_one_finalizer_writes(runtime):
    rt = runtime
    rt.configure(results_part_rows=3)  # two methods: a part every two items
    spec = {"methods": ["gradient", "guided_backprop"], "target": "label"}
    reference = rt.dataset_job(_dataset(rt), **spec)
    rt.run(reference)
    assert rt.ctx.jobs.get(reference).status is JobStatus.SUCCEEDED

    job_id = rt.dataset_job(_dataset(rt), **spec)
    rt.run_to_finalizer(job_id)
    ctx = rt.ctx
    model = ctx.models.get(TENANT, rt.model).spec
    steps: list[str] = []
    while True:  # each finalizer does one step, then is lost: its control lease expires
        token = ctx.jobs.take_control(job_id, ctx.settings.lease_s)
        job = ctx.jobs.get(job_id)
        finalizer = finalizer_steps(Finalizing.start(ctx, job, token), KINDS[job.kind], model)
        step = next(finalizer, None)
        ctx.redis.delete(RecordKeys(job_id).control)
        if step is None:
            break
        steps.append(step)
        if len(steps) == 2:  # a lost finalizer that wakes up may write, never record
            taken = ctx.jobs.take_control(job_id, ctx.settings.lease_s)
            with pytest.raises(Fenced):
                next(finalizer)
            ctx.jobs.release_control(job_id, taken)
    assert len(steps) == len(set(steps)), steps  # no step done twice
    parts = [s for s in steps if s.startswith("rows")]
    assert parts == ["rows of items [0, 2)", "rows of items [2, 4)", "rows of items [4, 6)",
                     "rows of items [6, 7)"]
    assert steps[len(parts)] == "results" and steps[-1] == "report"
    assert any(s.startswith("picture:suspects/") for s in steps)
    assert any(s.startswith("dependence:") for s in steps)

    token = ctx.jobs.take_control(job_id, ctx.settings.lease_s)
    assert finalize(ctx, job_id, token)  # the last one finds every step done, and finishes
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (ITEMS - 1, 1)

    rows, report, pictures = _written(rt, job_id)
    assert (rows, report, pictures) == _written(rt, reference)
    assert sorted((r["index"], r["position"]) for r in rows) == sorted(
        [(i, p) for i in range(ITEMS - 1) for p in (0, 1)] + [(ITEMS - 1, None)],
        key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    assert not ctx.redis.exists(RecordKeys(job_id).checkpoint)  # the checkpoint is gone
    assert not list(ctx.storage.list(JobKeys(TENANT, job_id).prefix + "/parts/"))


def test_a_finalizer_out_of_time_hands_over_to_a_fresh_task_that_resumes(runtime):
    """With no time left after any step, each finalizer does one step, sends the job's next
    finalizer task and stops; called again and again (as those tasks would be), the job ends
    as one uninterrupted finalizer would have ended it."""
    from shared.taskqueue import CONTROL_QUEUE
    from worker.jobs.runner import advance

    rt = runtime
    rt.configure(results_part_rows=2)
    job_id = rt.dataset_job(_dataset(rt))
    rt.run_to_finalizer(job_id)
    rt.configure(task_time_limit_s=0)
    queued = rt.ctx.redis.llen(CONTROL_QUEUE)
    calls = 0
    while not rt.ctx.jobs.get(job_id).is_final:
        advance(rt.ctx, job_id)
        calls += 1
        assert calls < 100
    parts = -(-ITEMS // 2)
    pictures = len([k for k in rt.ctx.storage.list(JobKeys(TENANT, job_id).artifact("x")[:-1])
                    if k.endswith(".png")])
    # A call per step (the parts, the merge, the input dependence, each picture, the report),
    # and the last one, which finds every step done and makes the job final.
    assert calls == parts + 1 + 1 + pictures + 1 + 1
    assert rt.ctx.redis.llen(CONTROL_QUEUE) - queued == calls - 1  # a fresh task each time
    job = rt.ctx.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (ITEMS - 1, 1)
    rows = pq.read_table(io.BytesIO(rt.ctx.storage.get(JobKeys(TENANT, job_id).results())))
    assert sorted(rows.column("index").to_pylist()) == list(range(ITEMS))
