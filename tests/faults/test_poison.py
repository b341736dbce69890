"""A poison input that kills every worker that reads it (`SALIENCY_FAULTS=kill_on_input:…`,
the test-only fault injection): each time Celery starts a fresh pool process, and after
`SALIENCY_MAX_ATTEMPTS` attempts the item fails, the job ends, and nothing is lost.

Its neighbours do not fail with it: a loss is charged to the items in flight when the worker
died, and after the first the chunk's items go one at a time (`JobStore.charge_lost_run`).
"""

from __future__ import annotations

import pytest

from faults.ledger import check

MAX_ATTEMPTS = 3
POISON = 13


def _poisoned_job(make_stack, pngs, tiny_weights):
    stack = make_stack(workers=2, extra={"SALIENCY_FAULTS": "kill_on_input:poison",
                                         "SALIENCY_MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    model = stack.register_model(tiny_weights)
    files = pngs(24, "ok")
    files[POISON] = ("poison.png", files[POISON][1])
    job_id = stack.submit({"model": model, "outputs": ["npy"]}, files)
    job = stack.wait_final(job_id, timeout=600)
    items = {i["index"]: i for i in stack.get(f"/v1/jobs/{job_id}/items",
                                               params={"limit": 100}).json()["items"]}
    return stack, job, items, check(stack, job_id)


@pytest.mark.chaos
def test_a_poison_input_fails_after_the_attempts_and_the_job_ends(make_stack, pngs,
                                                                   tiny_weights, figures):
    stack, job, items, verdict = _poisoned_job(make_stack, pngs, tiny_weights)
    chunk = int(stack.env["SALIENCY_CHUNK_SIZE"])
    first = POISON - POISON % chunk
    kills = sum(w.log.read_text(errors="replace").count("fault injection: killing this worker")
                for w in stack.workers)
    figures(case="poison input kills its worker every time", worker_kills=kills,
            failed=sorted(i for i, item in items.items() if item["status"] == "failed"),
            **verdict.figures())
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert items[POISON]["status"] == "failed"
    assert f"gave up after {MAX_ATTEMPTS} attempts" in items[POISON]["error"]
    # Items of the other chunks never met the poison.
    assert all(item["status"] == "succeeded" for i, item in items.items()
               if not first <= i < first + chunk)
    assert kills >= MAX_ATTEMPTS  # Celery started a fresh pool process after each


@pytest.mark.chaos
def test_a_poison_input_fails_alone(make_stack, pngs, tiny_weights):
    _, job, items, verdict = _poisoned_job(make_stack, pngs, tiny_weights)
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert [i for i, item in items.items() if item["status"] == "failed"] == [POISON]
