"""A poison input that kills every worker that reads it (`SALIENCY_FAULTS=kill_on_input:…`,
the test-only fault injection): the workers are started again each time, the item fails
alone after `SALIENCY_MAX_ATTEMPTS` attempts, and every other item succeeds.
"""

from __future__ import annotations

import pytest

from faults.ledger import check

MAX_ATTEMPTS = 3


@pytest.mark.chaos
def test_a_poison_input_fails_alone_after_the_attempts(make_stack, pngs, tiny_weights, figures):
    stack = make_stack(workers=2, extra={"SALIENCY_FAULTS": "kill_on_input:poison",
                                         "SALIENCY_MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    model = stack.register_model(tiny_weights)
    files = pngs(24, "ok")
    files[13] = ("poison.png", files[13][1])
    job_id = stack.submit({"model": model, "outputs": ["npy"]}, files)
    job = stack.wait_final(job_id, timeout=600)
    verdict = check(stack, job_id)
    items = {i["index"]: i for i in stack.get(f"/v1/jobs/{job_id}/items",
                                               params={"limit": 100}).json()["items"]}
    figures(case="poison input kills its worker every time", worker_restarts=stack.restarts,
            **verdict.figures())
    assert job["status"] == "succeeded"
    verdict.assert_clean()
    assert items[13]["status"] == "failed"
    assert f"gave up after {MAX_ATTEMPTS} attempts" in items[13]["error"]
    assert verdict.statuses == {"succeeded": 23, "failed": 1}
    assert stack.restarts >= MAX_ATTEMPTS
