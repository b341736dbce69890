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
