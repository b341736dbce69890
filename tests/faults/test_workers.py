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

import pytest
from waiting import wait_until

from devstack import start_worker
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
    wait_until(f"chunk {start} taken over", lambda: _attempts(r, job_id, start) > before,
               timeout=TAKEOVER_BOUND_S, every=0.02)
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
    resumed_s = _taken_over(stack, job_id, start, before, stopped)
    # Read once its chunk is taken over: by then what it sent before the signal has reached
    # Redis, and stopped, it can send nothing more.
    name = stack.worker_name(worker)
    published = _recorded_by(r, job_id, name, start, stop)
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


@pytest.mark.chaos
def test_a_chunk_reserved_by_a_worker_killed_before_it_started_is_taken_over(
        make_stack, pngs, tiny_weights, figures):
    """A worker whose pool process is still starting has already taken a chunk's message
    from the queue (Celery's prefetch); killed then, it leaves the message in Celery's
    unacknowledged set, where it would wait for the visibility timeout, and the chunk `sent`,
    with no lease to expire. The reconciler must take it back within its grace period."""
    stack = make_stack(workers=1)
    model = stack.register_model(tiny_weights)
    slow = start_worker({**stack.env, "SALIENCY_FAULTS": "slow_start:600"}, stack.logs,
                        name="worker-slow")
    try:
        job_id = stack.submit({"model": model, "outputs": ["npy"]}, pngs(24, "reserved"))
        r = stack.redis_client()
        start = wait_until("a chunk reserved, not started",
                           lambda: _reserved_not_started(r, job_id), timeout=120, every=0.02)
        stack.signal(slow, signal.SIGKILL)
        killed = time.monotonic()
        resumed_s = _taken_over(stack, job_id, start, 0, killed)
        job = stack.wait_final(job_id)
    finally:
        slow.stop()
    verdict = check(stack, job_id)
    figures(case="worker killed holding a reserved chunk message", resume_s=round(resumed_s, 1),
            visibility_timeout_s=int(stack.env["SALIENCY_VISIBILITY_TIMEOUT_S"]),
            **verdict.figures())
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 24}


def _reserved_not_started(r, job_id: str) -> int | None:
    """The start of a chunk of the job whose task was delivered (it is unacknowledged) but
    that no worker has taken (it is still `sent`), a second apart."""
    seen = None
    for _ in range(2):
        unacked = set()
        for raw in r.hvals("unacked"):
            headers = json.loads(raw)[0]["headers"]
            if headers["task"] == "saliency.run_chunk" and job_id in headers["argsrepr"]:
                unacked.add(int(headers["argsrepr"].strip("[]()").split(",")[1]))
        states = r.hgetall(f"saliency:job:{job_id}:cstate")
        reserved = {s for s in unacked if states.get(str(s)) == "sent"}
        seen = reserved if seen is None else seen & reserved
        if not seen:
            return None
        time.sleep(1)
    return min(seen)


# The documented bound: two renewals missed (2/3 of a lease) and the reconciler's next pass;
# the margin is for beat's tick and the task's way through Celery on a loaded machine.
REQUEUE_BOUND_S = 2 * LEASE_S / 3 + RECONCILE_EVERY_S
REQUEUE_MARGIN_S = 2.0
# A chunk of 8 items (two batches) takes about 20 s on the 2-core VM: far longer than the bound.
SLOW_METHOD = {"name": "smoothgrad", "samples": 600}


@pytest.mark.chaos
def test_a_killed_workers_chunk_is_requeued_within_the_bound_while_every_worker_is_busy(
        make_stack, pngs, tiny_weights, figures):
    """Two workers, each running a long chunk; one is killed (and not restarted), the other
    stays busy for many seconds more. Its chunk is requeued within 2/3 of a lease and a
    reconciler pass: the reconciler's own consumer runs it, not a worker (it used to wait in
    the control queue until the busy worker's chunk ended)."""
    stack = make_stack(workers=2, supervise=False)
    model = stack.register_model(tiny_weights)
    r = stack.redis_client()
    job_id = stack.submit({"model": model, "methods": [SLOW_METHOD]}, pngs(16, "busy"))
    key = f"saliency:job:{job_id}"

    def both_running() -> dict[str, str] | None:
        states, names = r.hgetall(f"{key}:cstate"), r.hgetall(f"{key}:cworker")
        running = {names[s]: s for s, state in states.items() if state == "running"}
        return running if len(running) == 2 else None

    running = wait_until("both workers running a chunk", both_running, timeout=300,
                         every=0.01)
    victim, busy = stack.workers
    lost, kept = running[stack.worker_name(victim)], running[stack.worker_name(busy)]
    stack.signal(victim, signal.SIGKILL)
    killed = time.monotonic()
    wait_until("the lost chunk requeued", lambda: r.hget(f"{key}:cstate", lost) != "running",
               timeout=300, every=0.01)
    requeued_s = time.monotonic() - killed
    still_busy = r.hget(f"{key}:cstate", kept) == "running"
    job = stack.wait_final(job_id, timeout=600)
    verdict = check(stack, job_id)
    figures(case="worker kill -9 while every other worker is busy", requeued_s=round(
        requeued_s, 1), bound_s=REQUEUE_BOUND_S, other_worker_still_busy=still_busy,
        lease_s=LEASE_S, reconcile_every_s=RECONCILE_EVERY_S, **verdict.figures())
    assert still_busy, "the other worker finished its chunk first: make the method slower"
    assert requeued_s <= REQUEUE_BOUND_S + REQUEUE_MARGIN_S, requeued_s
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": 16}
