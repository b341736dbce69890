"""The API killed outright and started again mid-job: it holds no job state (Redis and the
workers do), so the job goes on while it is down and every item ends exactly once; clients
polling meanwhile see connection errors for as long as the API takes to start.
"""

from __future__ import annotations

import signal
import time

import requests

from faults.ledger import check


def test_an_api_restart_mid_job_loses_nothing(fast_stack, pngs, figures):
    stack = fast_stack
    job_id = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"]}, pngs(48, "api"))
    stack.worker_mid_chunk(job_id)
    done_before = stack.job(job_id)["progress"]["done"]
    killed = time.monotonic()
    stack.signal(stack.api, signal.SIGKILL)
    stack.api = stack.api.restart()
    answering_s = time.monotonic() - killed
    job = stack.wait_final(job_id)
    verdict = check(stack, job_id)
    again = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"]}, pngs(1, "again"))
    figures(case="API kill -9 and restart mid-job", done_before=done_before,
            api_down_s=round(answering_s, 1), **verdict.figures())
    assert requests.get(f"{stack.url}/healthz", timeout=10).status_code == 200
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 48}
    assert stack.wait_final(again)["status"] == "succeeded"
