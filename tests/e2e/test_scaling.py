"""One job spread over two worker processes: its chunks run on both, and counts stay exact."""

from __future__ import annotations

import requests

from devstack import ROOT, start_worker
from e2e.helpers import all_items, image_bytes, submit, wait

LOGS = ROOT / "test-output" / "logs"


def test_two_workers_share_one_job(file_backend, api_url, tiny_model):
    second = start_worker(file_backend.env, LOGS, name="worker-file-second")
    try:
        session = requests.Session()
        inputs = [(f"{i}.png", image_bytes(200 + i)) for i in range(16)]  # 4 chunks of 4
        response = submit(session, api_url, {"model": tiny_model, "outputs": ["npy"]}, inputs)
        assert response.status_code == 202, response.text
        job = wait(session, api_url, response.json()["id"])
        items = all_items(session, api_url, job["id"], limit=100)
    finally:
        second.stop()
    assert job["status"] == "succeeded"
    assert job["progress"] == {"total": 16, "done": 16, "failed": 0}
    assert [item["index"] for item in items] == list(range(16))
    assert all(item["status"] == "succeeded" for item in items)
    workers = {item["worker"] for item in items}
    assert len(workers) == 2, workers  # both took part
    assert any(w.startswith("worker-file-second") for w in workers)
    # Each chunk ran on one worker: items of a chunk share it.
    for start in range(0, 16, 4):
        assert len({item["worker"] for item in items[start : start + 4]}) == 1


def test_a_whole_job_task_from_before_chunks_still_runs(file_backend, api_url, tiny_model):
    """A `saliency.run_job(id)` left in the queue by an older API is split into chunks."""
    import uuid

    from shared.jobstore import JobStore
    from shared.taskqueue import QUEUE, RUN_JOB, make_sender

    settings = file_backend.settings()
    store, storage = JobStore.from_url(settings.redis_url), file_backend.storage()
    job_id = uuid.uuid4().hex
    inputs = []
    for i in range(6):
        key = f"t/default/jobs/{job_id}/inputs/{i:06d}.png"
        storage.put(key, image_bytes(300 + i))
        inputs.append({"name": f"{i}.png", "key": key})
    store.create_job(job_id, "default", {"model": tiny_model, "outputs": ["npy"]}, inputs)
    make_sender(settings).send_task(RUN_JOB, args=[job_id], queue=QUEUE)
    job = wait(requests.Session(), api_url, job_id)
    assert job["status"] == "succeeded" and job["progress"]["done"] == 6, job
