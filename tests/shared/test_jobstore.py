"""Job state in a real Redis: transitions, exactly-once counting, idempotency keys."""

from __future__ import annotations

import uuid

import pytest

from shared.jobstore import JobStore
from shared.status import JobStatus

Q, R, S, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.CANCELLED


@pytest.fixture
def store(redis_server):
    store = JobStore.from_url(f"{redis_server}/5")
    store.redis.flushdb()
    yield store
    store.redis.flushdb()


def _job(store, total=3) -> str:
    job_id = uuid.uuid4().hex
    store.create_job(job_id, "t", {"model": "m"}, [{"name": f"{i}", "key": f"k{i}"}
                                                   for i in range(total)])
    return job_id


def test_a_redelivered_item_is_counted_once(store):
    job_id = _job(store)
    store.record_item(job_id, 0, {"status": "succeeded"}, ok=True)
    store.record_item(job_id, 0, {"status": "succeeded"}, ok=True)
    store.record_item(job_id, 1, {"status": "failed"}, ok=False)
    store.record_item(job_id, 1, {"status": "succeeded"}, ok=True)  # a retry that worked
    job = store.get_job(job_id)
    assert (job.done, job.failed, job.total) == (2, 0, 3)
    assert store.finished_indices(job_id) == {0, 1}
    assert store.items(job_id, [1, 2]) == [{"status": "succeeded"}, None]


def test_transitions_happen_once_and_move_the_gauges(store):
    job_id = _job(store)
    assert store.transition(job_id, R, (Q,))
    assert not store.transition(job_id, R, (Q,))
    assert store.transition(job_id, C, (Q, R))
    assert not store.transition(job_id, S, (R,))  # a finish after a cancel loses
    job = store.get_job(job_id)
    assert job.status is C and job.started_at and job.finished_at
    counters, latency = store.stats()
    assert counters["jobs:queued"] == "0" and counters["jobs:running"] == "0"
    assert counters["jobs:cancelled"] == "1" and latency["+Inf"] == "1"


def test_idempotency_keys(store):
    assert store.reserve_idempotency("t", "k", "job-1", 60) is None
    assert store.reserve_idempotency("t", "k", "job-2", 60) == "job-1"
    assert store.reserve_idempotency("other", "k", "job-3", 60) is None  # per tenant
    store.release_idempotency("t", "k")
    assert store.reserve_idempotency("t", "k", "job-4", 60) is None


def test_inputs_and_models(store):
    job_id = _job(store, total=5)
    assert [i["name"] for i in store.input_range(job_id, 1, 3)] == ["1", "2"]
    assert len(store.inputs(job_id)) == 5
    assert store.put_model("t", "m", {"spec": 1}, replace=False)
    assert not store.put_model("t", "m", {"spec": 2}, replace=False)
    assert store.get_model("t", "m") == {"spec": 1} and store.get_model("u", "m") is None
    assert store.put_model("_builtin", "b", {"spec": 3}, replace=True)
    assert store.get_model("u", "b") == {"spec": 3}
    assert store.list_models("t") == [{"spec": 3}, {"spec": 1}]


def test_the_last_of_many_chunks_finishes_the_job_exactly_once(store):
    """Chunks finishing at once: each records its items, then tries to finish the job; the
    check and the transition are one script, so exactly one of them finishes it."""
    from concurrent.futures import ThreadPoolExecutor

    job_id = _job(store, total=8)
    store.transition(job_id, R, (Q,))

    def chunk(index: int):
        store.record_item(job_id, index, {"status": "succeeded"}, ok=True)
        return store.finish_if_complete(job_id)

    with ThreadPoolExecutor(8) as pool:
        finished = [s for s in pool.map(chunk, range(8)) if s is not None]
    assert finished == [S]
    assert store.get_job(job_id).status is S and store.get_job(job_id).finished_at
    assert store.finish_if_complete(job_id) is None  # a late chunk changes nothing
    counters, latency = store.stats()
    assert counters["jobs:running"] == "0" and counters["jobs:succeeded"] == "1"
    assert latency["+Inf"] == "1"


def test_a_job_whose_items_all_failed_fails_quoting_the_first(store):
    job_id = _job(store, total=2)
    store.transition(job_id, R, (Q,))
    store.record_item(job_id, 1, {"status": "failed", "error": "second"}, ok=False)
    assert store.finish_if_complete(job_id) is None  # item 0 not recorded yet
    store.record_item(job_id, 0, {"status": "failed", "error": "x.png: cannot"}, ok=False)
    assert store.finish_if_complete(job_id) is JobStatus.FAILED
    assert store.get_job(job_id).error == "every item failed; the first: x.png: cannot"


def test_unfinished_items_and_runs_are_counted_per_chunk(store):
    job_id = _job(store, total=6)
    store.record_item(job_id, 1, {"status": "succeeded"}, ok=True)
    store.record_item(job_id, 4, {"status": "failed"}, ok=False)
    assert store.unfinished(job_id, [0, 1, 2]) == [0, 2]
    assert store.unfinished(job_id, [3, 4, 5]) == [3, 5]
    # Two chunks running side by side are not two runs of one chunk.
    assert store.begin_run(job_id, 0) == 1 and store.begin_run(job_id, 3) == 1
    store.end_run(job_id, 0)
    assert store.begin_run(job_id, 0) == 1 and store.begin_run(job_id, 0) == 2
