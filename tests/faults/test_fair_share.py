"""Fair share while another tenant's big job runs: a 1-image job waits about two batches of
the big job (the batch running, and one batch of the big job's chunk already queued ahead of
it in Celery), not whole chunks. Counted in the big job's items done while the small job
waited, on one worker, with chunks of 16 batches.
"""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from waiting import wait_until

from faults.stack import MODEL_SPEC

BATCH, CHUNK = 4, 64
KEYS = {"alice": "fair-key-alice", "bob": "fair-key-bob"}


def _session(tenant: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {KEYS[tenant]}"
    return s


@pytest.mark.chaos
def test_a_small_job_waits_about_two_batches_of_another_tenants_big_job(make_stack, pngs,
                                                                        tiny_weights, figures):
    stack = make_stack(workers=1, extra={
        "SALIENCY_API_KEYS": ",".join(f"{k}:{t}:admin" for t, k in KEYS.items()),
        "SALIENCY_BATCH_SIZE": str(BATCH), "SALIENCY_CHUNK_SIZE": str(CHUNK)})
    alice, bob = _session("alice"), _session("bob")
    for s in (alice, bob):
        response = s.post(f"{stack.url}/v1/models", timeout=60, files={
            "spec": (None, json.dumps(MODEL_SPEC), "application/json"),
            "weights": ("w.safetensors", io.BytesIO(tiny_weights.read_bytes()))})
        assert response.status_code == 201, response.text
        wait_until("the model validated", lambda s=s: s.get(
            f"{stack.url}/v1/models/{MODEL_SPEC['name']}").json()["status"] == "ready",
            every=0.2)
    spec = json.dumps({"model": MODEL_SPEC["name"], "outputs": ["npy"]})

    def submit(s, files) -> str:
        parts = [("spec", (None, spec, "application/json"))]
        parts += [("images", (name, io.BytesIO(data))) for name, data in files]
        response = s.post(f"{stack.url}/v1/jobs", files=parts, timeout=120)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def done(s, job_id) -> int:
        return s.get(f"{stack.url}/v1/jobs/{job_id}", timeout=30).json()["progress"]["done"]

    # Bob's model loaded on the worker: not what is counted.
    stack.wait_final(submit(bob, pngs(1, "warm")), session=bob)
    big = submit(alice, pngs(4 * CHUNK, "big"))
    wait_until("the big job's third batch", lambda: done(alice, big) >= 2 * BATCH, every=0.02)
    waits = []
    for i in range(3):
        before = done(alice, big)
        small = submit(bob, pngs(1, f"small{i}"))
        wait_until("the small job's item", lambda small=small: done(bob, small) == 1,
                   timeout=300, every=0.02)
        waits.append(done(alice, big) - before)
        time.sleep(0.5)
    still = done(alice, big)
    figures(case="fair share: big job items done while a 1-image job waited", batch=BATCH,
            chunk=CHUNK, waits_items=waits)
    assert still < 4 * CHUNK  # the big job was running all along
    # The batch running, one batch of the chunk queued ahead, and one for the polls' lag.
    assert max(waits) <= 3 * BATCH, waits
