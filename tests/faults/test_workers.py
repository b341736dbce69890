"""Workers lost mid-job: killed outright, or stopped past their lease and then resumed.

A lost worker's chunk is taken over once its lease expires and the reconciler's next pass
finds it (`SALIENCY_LEASE_S` + `SALIENCY_RECONCILE_EVERY_S`, plus the wait for a free
worker); a stopped worker that wakes up again cannot publish anything of the chunk it lost
(fencing), so every item still has exactly one result. The signals go to the worker's whole
process group (its pool child too), as when a node is lost or a container frozen.
"""

from __future__ import annotations

import json
import signal
import time

from faults.ledger import check
from faults.stack import LEASE_S, RECONCILE_EVERY_S

# Taken over within the lease and a reconciler pass; the rest is margin for a loaded machine
# (a free worker to run it, the task's way through Celery).
TAKEOVER_BOUND_S = LEASE_S + RECONCILE_EVERY_S + 30


def _attempts(r, job_id: str, start: int) -> int:
    return int(r.hget(f"saliency:job:{job_id}:cattempts", str(start)) or 0)


def _taken_over(stack, job_id: str, start: int, before: int, t0: float) -> float:
    """Seconds from `t0` until chunk `start` is acquired again (its attempts grow)."""
    r = stack.redis_client()
    stack.wait_for(f"chunk {start} taken over", lambda: _attempts(r, job_id, start) > before,
                   timeout=TAKEOVER_BOUND_S)
    return time.monotonic() - t0


def _recorded_by(r, job_id: str, worker: str, start: int, stop: int) -> set[int]:
    raw = r.hmget(f"saliency:job:{job_id}:items", [str(i) for i in range(start, stop)])
    return {start + i for i, rec in enumerate(raw)
            if rec is not None and json.loads(rec).get("worker") == worker}


def test_a_worker_killed_mid_job_is_taken_over_within_the_lease(fast_stack, pngs, figures):
    stack = fast_stack
    job_id = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"]}, pngs(64, "kill"))
    worker, start, _ = stack.worker_mid_chunk(job_id)
    r = stack.redis_client()
    before = _attempts(r, job_id, start)
    killed = time.monotonic()
    stack.signal(worker, signal.SIGKILL)
    assert r.hget(f"saliency:job:{job_id}:cstate", str(start)) == "running"  # lost mid-run
    resumed_s = _taken_over(stack, job_id, start, before, killed)
    job = stack.wait_final(job_id)
    verdict = check(stack, job_id)
    figures(case="worker kill -9 mid-job", resume_s=round(resumed_s, 1), lease_s=LEASE_S,
            reconcile_every_s=RECONCILE_EVERY_S, **verdict.figures())
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 64}


def test_a_worker_stopped_past_its_lease_publishes_nothing_when_it_wakes(fast_stack, pngs,
                                                                           figures):
    stack = fast_stack
    job_id = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"]}, pngs(64, "stop"))
    worker, start, stop = stack.worker_mid_chunk(job_id)
    r = stack.redis_client()
    before = _attempts(r, job_id, start)
    stopped = time.monotonic()
    stack.signal(worker, signal.SIGSTOP)
    time.sleep(0.5)  # what it sent before the signal has reached Redis
    name = stack.worker_name(worker)
    published = _recorded_by(r, job_id, name, start, stop)
    resumed_s = _taken_over(stack, job_id, start, before, stopped)
    stack.signal(worker, signal.SIGCONT)
    job = stack.wait_final(job_id)
    log = worker.log.read_text(errors="replace")
    verdict = check(stack, job_id)
    figures(case="worker SIGSTOP past its lease, then SIGCONT", resume_s=round(resumed_s, 1),
            stopped_for_s=round(time.monotonic() - stopped, 1), **verdict.figures())
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 64}
    # Once awake, the stopped worker added nothing to the chunk it had lost: fenced.
    assert _recorded_by(r, job_id, name, start, stop) == published
    assert "its results are not published" in log or "lease taken over" in log
