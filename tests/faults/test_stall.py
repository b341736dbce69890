"""The stall check (`SALIENCY_STALL_S`): the reconciler fences the running chunks of a job
that has made no progress for that long. A data-set chunk publishes its items only when its
run commits, so a long run that goes on batch after batch must count as progress, or it is
fenced and redone until the job fails. Storage slowed by the proxy makes every input take
more than half a second: a chunk of 32 runs well past a 10 s stall time.
"""

from __future__ import annotations

import pytest
from waiting import FINAL, wait_until

from faults.ledger import check

STALL_S = 10
ITEMS = 32


@pytest.mark.chaos
def test_a_long_dataset_chunk_is_not_taken_for_a_stalled_one(make_stack, pngs, tiny_weights,
                                                              figures):
    import boto3

    stack = make_stack(workers=2, s3=True, extra={
        "SALIENCY_STALL_S": str(STALL_S), "SALIENCY_DATASET_CHUNK_SIZE": str(ITEMS),
        "SALIENCY_DATASET_ROOTS": "s3://datasets"})
    s3 = boto3.client("s3", endpoint_url=stack.moto.url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="datasets")
    for name, data in pngs(ITEMS, "slow"):
        s3.put_object(Bucket="datasets", Key=f"slow/{name}", Body=data)
    model = stack.register_model(tiny_weights)
    stack.proxy.latency_s = 0.3
    job_id = stack.submit({"model": model, "methods": ["gradient"],
                           "dataset": {"prefix": "s3://datasets/slow/"}})
    # Slow storage is for the chunk; the audit and the finalizer after it run at full speed.
    wait_until("the chunk done", lambda: (job := stack.job(job_id))["progress"]["done"]
               == ITEMS or job["status"] in FINAL,
               timeout=600, every=0.2)
    stack.proxy.latency_s = 0
    job = stack.wait_final(job_id, timeout=300)
    log = "".join(w.log.read_text(errors="replace") for w in stack.workers)
    runs = [line for line in log.splitlines() if f"job {job_id} chunk [0:" in line]
    stalls = int(stack.redis_client().hget(f"saliency:job:{job_id}", "stalls") or 0)
    verdict = check(stack, job_id)
    figures(case="a data-set chunk running past the stall time", stall_s=STALL_S,
            chunk_runs=runs, stalls=stalls, **verdict.figures())
    assert job["status"] == "succeeded", job["error"]
    assert stalls == 0 and "no progress for" not in log
    verdict.assert_clean()
    assert verdict.statuses == {"succeeded": ITEMS}
    assert float(runs[-1].rsplit(" in ", 1)[1].split()[0]) > STALL_S  # it did run that long
