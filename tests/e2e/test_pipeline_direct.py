"""The worker's pipeline called directly, without Celery, on the real Redis and local storage:
resuming after a lost or stopped run, the poison-item cap, cancellation before a run."""

from __future__ import annotations

import uuid

import pytest
from shared.jobstore import JobStore, job_key

from e2e.helpers import image_bytes
from shared.modelspec import parse_model_spec
from shared.registry import register_model
from shared.settings import Settings
from shared.status import JobStatus

pytest.importorskip("torch")


@pytest.fixture
def ctx(redis_server, tmp_path, tiny_weights, tiny_spec):
    from worker.pipeline import WorkerContext

    settings = Settings(redis_url=f"{redis_server}/6", storage_url=(tmp_path / "s").as_uri(),
                        data_dir=str(tmp_path), batch_size=2, device="cpu", max_attempts=2)
    ctx = WorkerContext.create(settings)
    ctx.store.redis.flushdb()
    register_model(ctx.store, ctx.storage, "t", parse_model_spec(tiny_spec), "safetensors",
                   tiny_weights.read_bytes())
    yield ctx
    ctx.store.redis.flushdb()


def _job(ctx, n: int = 5) -> str:
    model = next(iter(ctx.store.list_models("t")))["spec"]["name"]
    job_id = uuid.uuid4().hex
    inputs = []
    for i in range(n):
        key = f"t/t/jobs/{job_id}/inputs/{i:06d}.png"
        ctx.storage.put(key, image_bytes(100 + i))
        inputs.append({"name": f"{i}.png", "key": key})
    ctx.store.create_job(job_id, "t", {"model": model, "outputs": ["npy"]}, inputs)
    return job_id


def _items_done(store: JobStore) -> int:
    return int(store.stats()[0].get("items_done", 0))


def test_a_stopped_run_resumes_and_recorded_items_are_not_redone(ctx):
    from worker.pipeline import run_job

    job_id = _job(ctx)
    ctx.store.transition(job_id, JobStatus.RUNNING, (JobStatus.QUEUED,))
    ctx.store.record_item(job_id, 0, {"status": "succeeded", "error": None, "prediction": None,
                                      "outputs": ["from an earlier run"]}, ok=True)
    assert run_job(ctx, job_id, budget_s=0) is False  # out of time: continue in a new task
    assert run_job(ctx, job_id) is True
    job = ctx.store.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (5, 0)
    assert ctx.store.items(job_id, [0])[0]["outputs"] == ["from an earlier run"]
    assert _items_done(ctx.store) == 5
    assert run_job(ctx, job_id) is True  # a stale redelivery changes nothing
    assert _items_done(ctx.store) == 5


def test_an_item_tried_too_often_fails_alone(ctx):
    from worker.pipeline import run_job

    job_id = _job(ctx, 3)
    ctx.store.redis.hincrby(f"{job_key(job_id)}:attempts", "1", 2)  # two lost workers
    run_job(ctx, job_id)
    job = ctx.store.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (2, 1)
    assert "gave up after 2 attempts" in ctx.store.items(job_id, [1])[0]["error"]


def test_a_job_cancelled_before_its_run_runs_nothing(ctx):
    from worker.pipeline import run_job

    job_id = _job(ctx, 2)
    ctx.store.transition(job_id, JobStatus.CANCELLED, (JobStatus.QUEUED,))
    assert run_job(ctx, job_id) is True
    job = ctx.store.get_job(job_id)
    assert job.status is JobStatus.CANCELLED and job.done == 0


def test_chunks_run_apart_and_the_last_one_finishes_the_job(ctx):
    from worker.pipeline import run_chunk

    job_id = _job(ctx, 5)
    assert run_chunk(ctx, job_id, 2, 5, worker="w2") is True
    job = ctx.store.get_job(job_id)
    assert job.status is JobStatus.RUNNING and (job.done, job.failed) == (3, 0)
    assert [i["worker"] for i in ctx.store.items(job_id, [2, 3, 4])] == ["w2"] * 3
    assert run_chunk(ctx, job_id, 0, 2, worker="w1") is True
    job = ctx.store.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (5, 0)
    item = ctx.store.items(job_id, [0])[0]
    assert item["worker"] == "w1"
    coverage = item["outputs"][0]["coverage"]
    # resnet18 applies ReLU 17 times; the gradient alone runs on autograd's own rule.
    assert (coverage["relu_calls"], coverage["overridden"]) == (17, 0)


def test_a_chunk_lost_too_often_fails_its_items_alone(ctx):
    from worker.pipeline import fail_items, run_chunk

    job_id = _job(ctx, 4)
    ctx.store.transition(job_id, JobStatus.RUNNING, (JobStatus.QUEUED,))
    fail_items(ctx, job_id, 0, 2, "the worker was lost 2 times")
    assert ctx.store.get_job(job_id).status is JobStatus.RUNNING
    run_chunk(ctx, job_id, 2, 4)
    job = ctx.store.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (2, 2)
    assert ctx.store.items(job_id, [0])[0]["error"] == "the worker was lost 2 times"
