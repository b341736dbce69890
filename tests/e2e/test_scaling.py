"""Scaling out and sharing: one job spread over two worker processes, and two tenants'
jobs sharing one worker fairly."""

from __future__ import annotations

import pytest
import requests
from stacks import register
from waiting import job_final, model_ready, wait_until

from devstack import ROOT, start_worker
from e2e.helpers import all_items, counts, image_bytes, submit

LOGS = ROOT / "test-output" / "logs"


@pytest.mark.chaos  # scale: a second worker process beside the shared stack's
def test_two_workers_share_one_job(file_backend, api_url, tiny_model):
    second = start_worker(file_backend.env, LOGS, name="worker-file-second")
    try:
        session = requests.Session()
        inputs = [(f"{i}.png", image_bytes(200 + i)) for i in range(16)]  # 4 chunks of 4
        response = submit(session, api_url, {"model": tiny_model, "outputs": ["npy"]}, inputs)
        assert response.status_code == 202, response.text
        job = job_final(session, api_url, response.json()["id"])
        items = all_items(session, api_url, job["id"], limit=100)
    finally:
        second.stop()
    assert job["status"] == "succeeded"
    assert counts(job) == {"total": 16, "done": 16, "failed": 0}
    assert [item["index"] for item in items] == list(range(16))
    assert all(item["status"] == "succeeded" for item in items)
    workers = {item["worker"] for item in items}
    assert len(workers) == 2, workers  # both took part
    assert any(w.startswith("worker-file-second") for w in workers)
    # Each chunk ran on one worker: items of a chunk share it.
    for start in range(0, 16, 4):
        assert len({item["worker"] for item in items[start : start + 4]}) == 1


def test_a_small_job_is_not_starved_by_another_tenants_big_job(stack, stack_model, alice, bob):
    """Fair share: bob's 1-image job, sent while alice's 200-image job (50 chunks) runs,
    finishes long before it: chunks are sent round-robin across tenants, a few at a time."""
    register(stack.url, {**stack_model.spec}, stack_model.weights, bob)
    assert model_ready(bob, stack.url, stack_model.name)["status"] == "ready"
    stack.backend.storage().put("incoming/fair.png", image_bytes(450))
    body = {"model": stack_model.name, "outputs": ["npy"],
            "inputs": [{"uri": stack.backend.storage().uri("incoming/fair.png")}] * 200}
    large = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30)
    assert large.status_code == 202, large.text
    wait_until("the large job's first item done", lambda: alice.get(
        f"{stack.url}/v1/jobs/{large.json()['id']}", timeout=10).json()["progress"]["done"])
    small = submit(bob, stack.url, {"model": stack_model.name, "outputs": ["npy"]},
                   [("one.png", image_bytes(460))])
    assert small.status_code == 202, small.text
    small_job = job_final(bob, stack.url, small.json()["id"], timeout=120)
    large_now = alice.get(f"{stack.url}/v1/jobs/{large.json()['id']}", timeout=10).json()
    assert small_job["status"] == "succeeded"
    assert large_now["progress"]["done"] < 100, large_now  # bob did not wait behind it
    assert alice.delete(f"{stack.url}/v1/jobs/{large.json()['id']}", timeout=10).ok
    job_final(alice, stack.url, large.json()["id"], timeout=120)
