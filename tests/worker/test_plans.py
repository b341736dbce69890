"""Planning data-set jobs on a real Redis and local storage: manifest lines past the cap, and
the tenant's quota of queued items."""

from __future__ import annotations

from shared.status import JobStatus
from worker.plans import planned_inputs


def test_a_manifest_line_past_the_cap_fails_its_item_alone(runtime):
    rt = runtime
    rt.configure(max_manifest_line_bytes=100)
    long = '{"uri": "b.png", "id": "' + "x" * 200 + '"}'
    manifest = rt.manifest("m.jsonl", [{"uri": "a.png"}, long, {"uri": "c.png"}])
    job_id = rt.dataset_job({"manifest": manifest})
    rt.plan(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert not job.planning and job.total == 3
    a, b, c = planned_inputs(rt.ctx, job, 0, 3)
    assert (a.error, c.error) == (None, None) and (a.uri, c.uri) == (
        f"{rt.root.as_uri()}/a.png", f"{rt.root.as_uri()}/c.png")
    assert b.error == (f"manifest line 2: is {len(long)} bytes, longer than the limit of 100 "
                       "bytes per line (SALIENCY_MAX_MANIFEST_LINE_BYTES)")
    assert job.status is JobStatus.QUEUED
