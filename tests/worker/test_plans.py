"""Planning data-set jobs on a real Redis and local storage: manifest lines past the cap, and
the tenant's quota of queued items."""

from __future__ import annotations

import pytest
from runtime_testing import TENANT

from shared.state.jobschema import queued_key
from shared.status import JobStatus
from shared.storage.keys import JobKeys


def test_a_manifest_line_past_the_cap_fails_its_item_alone(runtime):
    rt = runtime
    rt.configure(max_manifest_line_bytes=100)
    long = '{"uri": "b.png", "id": "' + "x" * 200 + '"}'
    manifest = rt.manifest("m.jsonl", [{"uri": "a.png"}, long, {"uri": "c.png"}])
    job_id = rt.dataset_job({"manifest": manifest})
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert not job.planning and job.total == 3
    a, b, c = rt.ctx.layout(job).inputs(0, 3)
    assert (a.error, c.error) == (None, None) and (a.uri, c.uri) == (
        f"{rt.root.as_uri()}/a.png", f"{rt.root.as_uri()}/c.png")
    assert b.error == (f"manifest line 2: is {len(long)} bytes, longer than the limit of 100 "
                       "bytes per line (SALIENCY_MAX_MANIFEST_LINE_BYTES)")
    assert job.status is JobStatus.QUEUED


def _images(rt, n: int) -> dict:
    from e2e.helpers import image_bytes

    folder = rt.root / "set"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(image_bytes(i, size=32))
    return {"prefix": folder.as_uri() + "/"}


def _queued(rt) -> int:
    return int(rt.ctx.redis.get(queued_key(TENANT)) or 0)


def _results(rt, job_id: str) -> list[dict]:
    import io

    import pyarrow.parquet as pq

    data = rt.ctx.storage.get(JobKeys(TENANT, job_id).results())
    return pq.read_table(io.BytesIO(data)).to_pylist()


def test_a_data_set_larger_than_the_quota_fails_as_soon_as_planning_sees_it(runtime):
    from worker.jobs.runner import advance

    rt = runtime
    rt.configure(max_queued_items=5)
    job_id = rt.dataset_job(_images(rt, 12))
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.finalizing and job.final_status is JobStatus.FAILED
    assert job.error == ("dataset.prefix: the data set has more than 5 items, more than a "
                         "tenant may have queued (SALIENCY_MAX_QUEUED_ITEMS): it can never run; "
                         "split it into data sets of at most 5 items")
    assert job.total == 5  # planning stopped there
    assert all(c.state == "planned" for c in rt.ctx.chunks.states(job_id))  # none released
    advance(rt.ctx, job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and _queued(rt) == 0
    rows = _results(rt, job_id)
    assert [r["index"] for r in rows] == list(range(5))
    assert {r["status"] for r in rows} == {"cancelled"}


@pytest.mark.parametrize(("items", "seen"), [(10, "at least 8"), (6, "6")])
def test_a_data_set_that_does_not_fit_beside_the_tenants_queued_items_fails(
        runtime, items, seen):
    """Another job's 6 items are queued, the quota is 10: planning stops at the first chunk
    past it, or the last one is caught when planning ends."""
    from worker.jobs.runner import advance

    rt = runtime
    rt.configure(max_queued_items=10)
    rt.ctx.redis.set(queued_key(TENANT), 6)
    job_id = rt.dataset_job(_images(rt, items))
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.final_status is JobStatus.FAILED and job.error == (
        f"quota: this data set's {seen} items and those the tenant already has queued exceed "
        "the limit of 10 per tenant (SALIENCY_MAX_QUEUED_ITEMS); submit it again when some "
        "have run")
    assert all(c.state == "planned" for c in rt.ctx.chunks.states(job_id))
    advance(rt.ctx, job_id)
    assert rt.ctx.jobs.get(job_id).status is JobStatus.FAILED
    assert _queued(rt) == 6  # the other job's, as before
    assert {r["status"] for r in _results(rt, job_id)} == {"cancelled"}


def test_a_data_set_that_fits_the_quota_is_counted_and_released(runtime):
    rt = runtime
    rt.configure(max_queued_items=10)
    rt.ctx.redis.set(queued_key(TENANT), 2)
    job_id = rt.dataset_job(_images(rt, 8))
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert not job.finalizing and job.total == 8 and _queued(rt) == 10
    assert {c.state for c in rt.ctx.chunks.states(job_id)} <= {"ready", "sent"}


def test_a_data_set_gone_before_planning_fails_the_job_and_ends_its_planning(runtime):
    """Its planner's error must end planning too: a job left `planning` is never finalized."""
    from worker.jobs.runner import advance

    rt = runtime
    manifest = rt.manifest("gone.jsonl", [{"uri": "a.png"}])
    (rt.root / "gone.jsonl").unlink()
    job_id = rt.dataset_job({"manifest": manifest})
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert not job.planning and job.final_status is JobStatus.FAILED
    assert job.error.startswith("dataset.manifest: no such object")
    advance(rt.ctx, job_id)
    assert rt.ctx.jobs.get(job_id).status is JobStatus.FAILED and _queued(rt) == 0


def test_a_planning_that_kept_dying_fails_the_job_and_ends_its_planning(runtime):
    """Planners that died `SALIENCY_MAX_ATTEMPTS` times left chunks half planned; the next
    one gives up: the job ends `failed` with the reason, nothing of the dead planners kept."""
    from worker.jobs.runner import advance

    rt = runtime
    rt.configure(max_attempts=2)
    job_id = rt.dataset_job(_images(rt, 8))
    pipe = rt.ctx.redis.pipeline(transaction=True)  # what a planner killed mid-plan leaves
    rt.ctx.chunks.add(pipe, job_id, [(0, 4)], "planned")
    pipe.execute()
    for _ in range(2):
        rt.ctx.jobs.count_plan_attempt(job_id)
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert not job.planning and job.finalizing and job.final_status is JobStatus.FAILED
    assert job.error == "planning the data set failed 2 times"
    assert rt.ctx.chunks.states(job_id) == [] and job.total == 0
    advance(rt.ctx, job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and job.error == "planning the data set failed 2 times"
    assert _queued(rt) == 0 and _results(rt, job_id) == []


def test_a_job_cancelled_while_it_is_planned_ends_its_planning_and_is_finalized(runtime):
    """The planner stops at the cancellation and ends planning, so its finalizer can run."""
    from worker.jobs.runner import advance

    rt = runtime
    job_id = rt.dataset_job(_images(rt, 8))
    assert rt.ctx.jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    rt.plan(job_id)
    assert not rt.ctx.jobs.get(job_id).planning
    advance(rt.ctx, job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.status is JobStatus.CANCELLED and job.error == "cancelled by the client"
    assert _queued(rt) == 0
