"""A data-set job through three faults in a row: a worker killed while it plans, Redis
killed and restarted while the next planner plans, and the workers killed while the
finalizer writes the results file. Storage (S3 behind the proxy) answers slowly throughout,
so that planning and finalizing take long enough to be hit.

A planner that dies is started again from scratch by the reconciler once its control lease
expires (the ledger reset, plan files overwritten); so is a finalizer, which rewrites the
same results file. The job ends with every item exactly once and one results file.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from waiting import wait_until

from faults.ledger import check
from faults.stack import LEASE_S

ITEMS = 96
LATENCY_S = 0.1


def _job(r, job_id: str) -> dict:
    return r.hgetall(f"saliency:job:{job_id}")


def _planned(r, job_id: str) -> int:
    return r.hlen(f"saliency:job:{job_id}:cstate")


def _control(r, job_id: str) -> bool:
    return bool(r.exists(f"saliency:lease:{job_id}:ctl"))


def _ledger_resets(r, job_id: str) -> Callable[[], bool]:
    """Whether the job's chunk ledger was deleted since this call (a planner starting from
    scratch resets it), told by Redis's keyspace notifications: counting chunks cannot tell
    the old planner's from the new one's."""
    r.config_set("notify-keyspace-events", "Kg")
    db = r.connection_pool.connection_kwargs.get("db", 0)
    events = r.pubsub(ignore_subscribe_messages=True)
    events.subscribe(f"__keyspace@{db}__:saliency:job:{job_id}:cstate")
    seen = []

    def reset() -> bool:
        while message := events.get_message():
            seen.append(message["data"])
        return "del" in seen

    return reset


@pytest.mark.chaos
def test_a_dataset_job_survives_faults_in_planning_and_finalizing(make_stack, pngs, tmp_path,
                                                                  tiny_weights, figures):
    root = tmp_path / "ds"
    root.mkdir()
    for name, data in pngs(ITEMS, "ds"):
        (root / name).write_bytes(data)
    stack = make_stack(workers=2, s3=True,
                       extra={"SALIENCY_DATASET_ROOTS": root.as_uri()})
    model = stack.register_model(tiny_weights)
    stack.proxy.latency_s = LATENCY_S
    r = stack.redis_client()
    job_id = stack.submit({"model": model, "methods": ["gradient"],
                           "dataset": {"prefix": root.as_uri() + "/"}})
    measured = {}

    # 1. A worker killed mid-plan: some chunks planned, planning not over.
    wait_until("two chunks planned", lambda: _planned(r, job_id) >= 2 and _job(
        r, job_id).get("planning") == "1", timeout=120, every=0.005)
    planner_fence = int(_job(r, job_id)["fence"])
    for worker in list(stack.workers):
        stack.signal(worker, signal.SIGKILL)  # the planner is one of them
    killed = time.monotonic()
    measured["planned_at_kill"] = _planned(r, job_id)
    reset = _ledger_resets(r, job_id)  # subscribed before any planner can start again

    # 2. The next planner takes over; Redis killed and restarted while it plans.
    wait_until("a new planner", lambda: int(_job(r, job_id).get("fence", 0)) > planner_fence
               and _control(r, job_id), timeout=180, every=0.01)
    measured["planner_restarted_s"] = round(time.monotonic() - killed, 1)
    wait_until("the new planner's reset of the ledger", reset, timeout=60, every=0.005)
    wait_until("two chunks planned again", lambda: _planned(r, job_id) >= 2,
               timeout=120, every=0.005)
    measured["planned_at_redis_kill"] = _planned(r, job_id)
    redis_killed = time.monotonic()
    stack.restart_redis(down_s=1)
    r = stack.redis_client()
    wait_until("planning over", lambda: _job(r, job_id).get("planning") == "0",
               timeout=300, every=0.1)
    measured["planned_after_redis_s"] = round(time.monotonic() - redis_killed, 1)

    # 3. Every worker killed while the finalizer writes the results file.
    wait_until("the finalizer running", lambda: _job(r, job_id).get("finalizing") == "1"
               and _control(r, job_id), timeout=600, every=0.005)
    for worker in list(stack.workers):
        stack.signal(worker, signal.SIGKILL)
    finalizer_killed = time.monotonic()
    # The finalizer that takes over runs at full speed: under the proxy's latency, its reads
    # of sampled maps, one request each, outlast the stack's 120 s task limit.
    stack.proxy.latency_s = 0
    job = stack.wait_final(job_id, timeout=600)
    measured["finalized_after_kill_s"] = round(time.monotonic() - finalizer_killed, 1)

    verdict = check(stack, job_id)
    storage = [k for k in _keys(stack) if f"/jobs/{job_id}/" in k]
    results = [k for k in storage if k.rsplit("/", 1)[1].startswith("results")]
    figures(case="data-set job: worker killed mid-plan, Redis restarted mid-plan, workers "
                 "killed mid-finalize", lease_s=LEASE_S, worker_restarts=stack.restarts,
            results_files=len(results), **measured, **verdict.figures())
    assert job["status"] == "succeeded"
    assert job["progress"]["total"] == ITEMS
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": ITEMS}
    assert len(results) == 1, results


def _keys(stack) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=stack.moto.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="faults"):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys
