"""A data-set job whose finalizer is killed twice mid-way, on slow storage (S3 behind the
proxy's latency): each finalizer that takes over resumes after the last step recorded, and
the job ends with one complete results file, every item once.

The finalizer writes the results file in parts (here of 8 rows: 12 parts), merges them,
then the report's measures and pictures one at a time, recording each step in the job's
checkpoint and logging it (`finalizer step done: ...`); the workers are killed once some
steps are recorded and again once the next finalizer has recorded more. A step recorded is
never done again, so no step is logged twice across the workers' logs.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter

import pytest
from waiting import wait_until

from faults.ledger import check
from faults.stack import LEASE_S

ITEMS = 96
LATENCY_S = 0.1
STEP = re.compile(r"job (\w+): finalizer step done: (.+)$")


def _checkpoint(r, job_id: str) -> dict[str, str]:
    return r.hgetall(f"saliency:job:{job_id}:final")


def _finalizing(r, job_id: str) -> bool:
    return r.hget(f"saliency:job:{job_id}", "finalizing") == "1"


def _kill_workers(stack) -> float:
    for worker in list(stack.workers):
        stack.signal(worker, signal.SIGKILL)  # the finalizer is one of them
    return time.monotonic()


@pytest.mark.chaos
def test_a_finalizer_killed_twice_resumes_where_the_last_one_stopped(make_stack, pngs,
                                                                      tmp_path, tiny_weights,
                                                                      figures):
    root = tmp_path / "ds"
    root.mkdir()
    for name, data in pngs(ITEMS, "fin"):
        (root / name).write_bytes(data)
    stack = make_stack(workers=2, s3=True, extra={"SALIENCY_DATASET_ROOTS": root.as_uri(),
                                                  "SALIENCY_RESULTS_PART_ROWS": "8"})
    model = stack.register_model(tiny_weights)
    r = stack.redis_client()
    job_id = stack.submit({"model": model, "methods": ["gradient"],
                           "dataset": {"prefix": root.as_uri() + "/"}})
    wait_until("the finalizer", lambda: _finalizing(r, job_id), timeout=600, every=0.05)
    stack.proxy.latency_s = LATENCY_S  # slow storage: the finalizer's steps take a while

    # 1. Killed once two parts of the results file are recorded, before the last.
    wait_until("two parts recorded", lambda: len(
        [f for f in _checkpoint(r, job_id) if f.startswith("part:")]) >= 2, timeout=300,
        every=0.005)
    first = _checkpoint(r, job_id)
    first_kill = _kill_workers(stack)
    assert "report" not in first and int(first["rows"]) < ITEMS

    # 2. Killed again once the next finalizer has recorded steps of its own.
    wait_until("the next finalizer's steps", lambda: len(_checkpoint(r, job_id)) > len(
        first) + 1, timeout=300, every=0.005)
    measured = {"resumed_after_kill_s": round(time.monotonic() - first_kill, 1)}
    second = _checkpoint(r, job_id)
    assert "report" not in second
    assert all(second[k] == v for k, v in first.items() if k != "rows")  # nothing undone
    _kill_workers(stack)
    stack.proxy.latency_s = 0
    job = stack.wait_final(job_id, timeout=600)

    steps = Counter()
    for log in stack.logs.glob("worker*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if (m := STEP.search(line)) and m.group(1) == job_id:
                steps[m.group(2)] += 1
    verdict = check(stack, job_id)
    results = [k for k in _keys(stack) if f"/jobs/{job_id}/" in k
               and k.rsplit("/", 1)[1].startswith("results")]
    parts = [k for k in _keys(stack) if f"/jobs/{job_id}/parts/" in k]
    figures(case="data-set job: finalizer killed twice mid-way (slow storage)", lease_s=LEASE_S,
            steps=len(steps), steps_at_first_kill=len(first), steps_at_second_kill=len(second),
            results_files=len(results), parts_left=len(parts), **measured,
            **verdict.figures())
    assert job["status"] == "succeeded"
    # No recorded step done twice. (A step is logged just after it is recorded: one killed
    # in between is recorded but not logged, so the count of steps is not judged.)
    assert [s for s, n in steps.items() if n > 1] == []
    assert "results" in steps and "report" in steps
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": ITEMS}
    assert len(results) == 1 and parts == [], (results, parts)
    assert not _checkpoint(r, job_id)


def _keys(stack) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=stack.moto.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="faults"):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys
