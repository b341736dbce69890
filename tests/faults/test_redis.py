"""Redis killed outright and restarted mid-job, on its append-only file fsynced every second
(as compose runs it): the reproduction of the reliability issue's first finding, where the
job stayed `running` at 48/96 for good. What Redis had not fsynced is lost (at most about a
second); leases expire, the reconciler makes the lost chunks ready again, workers reconnect
(or are restarted by their watchdog), and the job ends with every item exactly once.
"""

from __future__ import annotations

import time

import pytest
from waiting import wait_until

from faults.ledger import check

BUILTIN = "efficientnet_lite0"


def _done(stack, job_id: str) -> int:
    return int(stack.redis_client().hget(f"saliency:job:{job_id}", "done") or 0)


@pytest.mark.chaos
def test_a_redis_restart_mid_job_strands_nothing(make_stack, pngs, figures):
    stack = make_stack(workers=2, extra={"SALIENCY_BUILTIN_MODELS": "1"})
    wait_until(f"{BUILTIN} validated", lambda: stack.get(f"/v1/models/{BUILTIN}").json()[
        "status"] == "ready", timeout=300, every=0.5)
    job_id = stack.submit({"model": BUILTIN, "outputs": ["npy"]}, pngs(96, "redis", size=64))
    wait_until("16 items done", lambda: _done(stack, job_id) >= 16, timeout=300, every=0.01)
    done_at_kill = _done(stack, job_id)
    killed = time.monotonic()
    stack.restart_redis(down_s=2)
    back = time.monotonic()
    after_restart = _done(stack, job_id)
    wait_until("progress after the restart", lambda: _done(stack, job_id) > after_restart,
               timeout=300, every=0.05)
    resumed_s = time.monotonic() - back
    job = stack.wait_final(job_id, timeout=600)
    verdict = check(stack, job_id)
    figures(case="Redis kill -9, restarted within 3 s, at 16 done", down_s=round(back - killed, 1),
            done_at_kill=done_at_kill, done_after_restart=after_restart,
            resume_s=round(resumed_s, 1), total_s=round(time.monotonic() - killed, 1),
            worker_restarts=stack.restarts, **verdict.figures())
    assert back - killed < 3
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 96}
