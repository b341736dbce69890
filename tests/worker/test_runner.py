"""The runner's verdict on a job, on a real Redis: what a job whose items all failed says."""

from __future__ import annotations

from e2e.helpers import image_bytes

from shared.status import JobStatus


def test_a_dataset_job_whose_items_all_failed_names_the_first_items_error(runtime):
    rt = runtime
    (rt.root / "a.png").write_bytes(image_bytes(0, size=32))
    manifest = rt.manifest("m.jsonl", [{"uri": "a.png", "label": "cat"}] * 6)
    job_id = rt.dataset_job({"manifest": manifest}, target="label")
    rt.run(job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and (job.done, job.failed) == (0, 6)
    assert job.error == ("every item failed; the first: "
                         f"{rt.root.as_uri()}/a.png: label 'cat' is not a class of model "
                         f"'{rt.model}'")
