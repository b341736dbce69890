"""The worker's task bodies called directly, without Celery, on the real Redis and local
storage: runs that stop and continue, a run whose lease was taken over, the poison-item cap,
cancellation, and the reconciler restarting a chunk whose worker was lost."""

from __future__ import annotations

import uuid

import pytest
import redis
from e2e.helpers import image_bytes

from shared.models.registry import register_model
from shared.results.records import InputSource
from shared.settings import Settings
from shared.spec.layers import NCHW, Layout
from shared.spec.model import parse_model_spec
from shared.state.jobschema import RecordKeys
from shared.state.modelstore import ModelStatus
from shared.status import ItemStatus, JobStatus
from shared.storage.keys import JobKeys
from shared.taskqueue import chunk_ranges


@pytest.fixture(scope="module")
def validated(redis_server, tmp_path_factory, tiny_weights, tiny_spec):
    """The tiny model registered and validated once for the module: the settings, and the
    Redis keys that holds, dumped (each test starts from them)."""
    from worker.jobs.context import WorkerContext
    from worker.jobs.models import validate_model

    tmp = tmp_path_factory.mktemp("runs")
    settings = Settings(redis_url=f"{redis_server}/6", storage_url=(tmp / "s").as_uri(),
                        data_dir=str(tmp), batch_size=2, device="cpu", max_attempts=2,
                        lease_s=5, builtin_models=False)
    ctx = WorkerContext.create(settings)
    ctx.redis.flushdb()
    with open(tiny_weights, "rb") as f:
        register_model(ctx.models, ctx.storage, "t", parse_model_spec(tiny_spec),
                       "safetensors", f)
    assert validate_model(ctx, "t", tiny_spec["name"]) is ModelStatus.READY
    raw = redis.Redis.from_url(settings.redis_url)
    yield settings, {key: raw.dump(key) for key in raw.keys("*")}
    raw.flushdb()


@pytest.fixture
def ctx(validated):
    """A worker's context on a database holding only the validated model."""
    from worker.jobs.context import WorkerContext

    settings, keys = validated
    raw = redis.Redis.from_url(settings.redis_url)
    raw.flushdb()
    for key, value in keys.items():
        raw.restore(key, 0, value)
    return WorkerContext.create(settings)


def test_validation_records_every_module_its_layout_and_the_default_layer(ctx, tiny_spec):
    import torchvision

    layers = ctx.models.get("t", tiny_spec["name"]).layers
    assert layers.input_size == (32, 32)
    assert set(layers.layers) == {n for n, _ in torchvision.models.resnet18().named_modules()
                                  if n}
    assert layers.default == "layer3"  # layer4 is 1×1 at 32 px
    assert layers.layout("layer3") == Layout(NCHW, 256, (2, 2))
    assert layers.layers["layer1.0.relu"].runs == 2 and layers.layout("layer1.0.relu") is None
    assert layers.layers["fc"].shape == (10,) and layers.layers["fc"].module == "Linear"


def _job(ctx, n: int = 5, size: int = 8) -> str:
    from shared.spec.job import parse_job_spec
    from shared.state.jobs import NewJob

    job_id = uuid.uuid4().hex
    keys = JobKeys("t", job_id)
    sources = []
    for i in range(n):
        ctx.storage.put(keys.input(i, "png"), image_bytes(100 + i))
        sources.append(InputSource(name=f"{i}.png", key=keys.input(i, "png")))
    spec = {"kind": "attribution", "model": "tiny-resnet18", "methods": ["gradient"],
            "outputs": ["npy"]}
    pipe = ctx.redis.pipeline(transaction=True)
    ctx.jobs.create(NewJob(job_id, "t", parse_job_spec(spec), inputs=tuple(sources)), pipe)
    ctx.chunks.add(pipe, job_id, chunk_ranges(n, size), "planned")
    pipe.execute()
    ctx.chunks.activate(job_id)
    return job_id


def _finish(ctx, job_id: str) -> None:
    from worker.jobs.runner import advance

    advance(ctx, job_id)


def test_a_run_out_of_time_continues_in_a_split_chunk_and_nothing_is_redone(ctx):
    from dataclasses import replace

    from worker.jobs import runner

    job_id = _job(ctx, 5)
    settings = ctx.settings
    ctx.settings = replace(settings, task_time_limit_s=0)  # time for one batch only
    runner.run_chunk(ctx, job_id, 0, "w1")
    ctx.settings = settings
    states = {c.start: (c.stop, c.state) for c in ctx.chunks.states(job_id)}
    assert states[0][1] == "done" and states[0][0] < 5  # one batch ran, the rest split off
    rest = states[0][0]
    assert states[rest][0] == 5 and states[rest][1] in ("ready", "sent")  # and pumped
    done_first = ctx.jobs.get(job_id).done
    runner.run_chunk(ctx, job_id, rest, "w2")
    _finish(ctx, job_id)
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (5, 0)
    workers = [r.worker for r in ctx.jobs.items(job_id, list(range(5)))]
    assert workers == ["w1"] * done_first + ["w2"] * (5 - done_first)


def test_a_run_whose_lease_was_taken_over_publishes_nothing(ctx):
    from shared.state.chunks import Fenced
    from worker.jobs.leases import LeaseKeeper
    from worker.kinds.attribution.chunk import run_attribution

    job_id = _job(ctx, 2)
    lease = ctx.chunks.acquire(job_id, 0, "w1", 5)
    ctx.redis.delete(lease.key)  # taken over while the worker was stopped
    assert ctx.chunks.requeue(job_id, 0, "running")
    newer = ctx.chunks.acquire(job_id, 0, "w2", 5)
    with pytest.raises(Fenced), LeaseKeeper(lambda: True, 5) as keeper:
        run_attribution(ctx, ctx.jobs.get(job_id), lease, keeper, "w1")
    assert ctx.jobs.get(job_id).done == 0  # the stale run recorded nothing
    assert ctx.chunks.commit(lease, 2) == -1
    assert newer.token > lease.token


def test_an_item_tried_too_often_fails_alone(ctx):
    from worker.jobs import runner

    job_id = _job(ctx, 3)
    limit = ctx.settings.max_attempts
    ctx.redis.hset(RecordKeys(job_id).losses, "1", limit - 1)  # workers lost on it before
    ctx.redis.hset(RecordKeys(job_id).inflight, "0", "[1]")  # ... and once more, last run
    runner.run_chunk(ctx, job_id, 0, "w")
    _finish(ctx, job_id)
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (2, 1)
    assert f"gave up after {limit} attempts" in ctx.jobs.items(job_id, [1])[0].error


def test_a_job_cancelled_before_its_run_runs_nothing_and_lists_its_items_cancelled(ctx):
    from worker.jobs import runner

    job_id = _job(ctx, 2)
    assert ctx.jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    runner.run_chunk(ctx, job_id, 0, "w")
    _finish(ctx, job_id)
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.CANCELLED and job.done == 0
    results = ctx.storage.get(JobKeys("t", job_id).results())
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(results)).to_pylist()
    assert [row["status"] for row in table] == [ItemStatus.CANCELLED.value] * 2


def test_chunks_run_apart_and_the_last_one_starts_the_finalizer(ctx):
    from worker.jobs import runner

    job_id = _job(ctx, 5, size=2)
    for start in (4, 0):
        runner.run_chunk(ctx, job_id, start, f"w{start}")
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.RUNNING and (job.done, job.failed) == (3, 0)
    runner.run_chunk(ctx, job_id, 2, "w2")
    assert ctx.jobs.open_chunks(job_id) == 0
    _finish(ctx, job_id)
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and (job.done, job.failed) == (5, 0)
    item = ctx.jobs.items(job_id, [0])[0]
    # resnet18 applies ReLU 17 times; the gradient alone runs on autograd's own rule.
    assert (item.outputs[0].coverage["relu_calls"], item.outputs[0].coverage["overridden"]) == (
        17, 0)
    assert not [k for k in ctx.redis.keys(f"saliency:job:{job_id}:c*") if not k.endswith("cseg")]


def test_the_reconciler_requeues_a_chunk_whose_worker_was_lost(ctx):
    from worker.jobs import runner
    from worker.jobs.reconciler import reconcile

    job_id = _job(ctx, 2)
    lease = ctx.chunks.acquire(job_id, 0, "lost-worker", 5)
    assert reconcile(ctx).requeued_lost == 0  # its lease is alive
    ctx.redis.delete(lease.key)  # the worker died: its lease expires
    assert reconcile(ctx).requeued_lost == 1
    runner.run_chunk(ctx, job_id, 0, "w2")
    _finish(ctx, job_id)
    job = ctx.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.done == 2
    assert {r.worker for r in ctx.jobs.items(job_id, [0, 1])} == {"w2"}
