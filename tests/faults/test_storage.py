"""Storage unreachable for 30 s mid-job: a TCP proxy in front of the S3 server stops
forwarding (open connections cut, new ones never answered). Every S3 call fails after its
short timeouts, the workers retry within `SALIENCY_RETRY_BUDGET_S`, and once storage is back
the job goes on and ends with nothing lost. Meanwhile the API keeps answering what needs only
Redis.
"""

from __future__ import annotations

import time

import pytest
import requests
from waiting import wait_until

from faults.ledger import check

OUTAGE_S = 30


def _done(stack, job_id: str) -> int:
    return int(stack.redis_client().hget(f"saliency:job:{job_id}", "done") or 0)


@pytest.mark.chaos
def test_storage_unreachable_for_30_s_loses_nothing(make_stack, pngs, tiny_weights, figures):
    stack = make_stack(workers=2, s3=True, extra={"SALIENCY_RETRY_BUDGET_S": "300"})
    model = stack.register_model(tiny_weights)
    job_id = stack.submit({"model": model, "outputs": ["npy", "png"]}, pngs(96, "s3"))
    wait_until("8 items done", lambda: _done(stack, job_id) >= 8, timeout=300, every=0.02)
    stack.proxy.pause()
    cut = time.monotonic()
    done_at_cut = _done(stack, job_id)
    answers = []
    while time.monotonic() - cut < OUTAGE_S:
        t0 = time.monotonic()
        for path in ("/healthz", f"/v1/jobs/{job_id}"):
            answers.append((path, requests.get(f"{stack.url}{path}", timeout=30).status_code,
                            time.monotonic() - t0))
        time.sleep(1)
    done_in_outage = _done(stack, job_id) - done_at_cut
    stack.proxy.resume()
    back = time.monotonic()
    after = _done(stack, job_id)
    wait_until("progress after the outage", lambda: _done(stack, job_id) > after,
               timeout=300, every=0.05)
    resumed_s = time.monotonic() - back
    job = stack.wait_final(job_id, timeout=600)
    verdict = check(stack, job_id, methods=1)
    figures(case="storage unreachable 30 s (proxy paused)", outage_s=OUTAGE_S,
            done_at_cut=done_at_cut, done_during_outage=done_in_outage,
            resume_s=round(resumed_s, 1),
            slowest_api_answer_s=round(max(a[2] for a in answers), 2), **verdict.figures())
    assert {(path, status) for path, status, _ in answers} == {
        ("/healthz", 200), (f"/v1/jobs/{job_id}", 200)}
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 96}
