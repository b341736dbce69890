"""`visualize` through the real stack: a class model visualization of the seeded tiny
resnet18 at 32 px, checked with plain PyTorch; the same job continued across tasks on a stack
of its own with a short task time limit, equal to the uninterrupted run (`make chaos`; `make
test` proves the continuation without a stack, `tests/worker/test_visualize_resume.py`); a job
cancelled mid-way, whose snapshots showed while it ran.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from stacks import LOGS, MODEL_SPEC, WORKER_ENV, register
from waiting import FINAL, model_ready, wait_until

from devstack import stack_env, start_api, start_beat, start_reconciler, start_worker
from e2e.helpers import all_items
from shared.settings import Settings
from shared.state.chunks import Chunks
from shared.storage.interface import make_storage
from shared.storage.keys import JobKeys

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # the tiny model's normalization
STD = np.array([0.229, 0.224, 0.225], np.float32)
CLASS = 3
STEPS, SNAPSHOT_EVERY = 256, 8
# Light transformations: a random resnet18 at 32 px climbs far in a few hundred steps.
REGULARIZERS = {"jitter": 1, "scale": None, "rotate": None}
# A task may run for half its time limit before it checkpoints and hands its chunk back: at
# 4 s, the job's 256 steps take several tasks even on a fast machine (10 ms a step).
TASK_TIME_LIMIT_S = 4


def class_spec(model: str) -> dict:
    return {"kind": "visualize", "model": model, "objective": {"class": CLASS},
            "steps": STEPS, "seed": 7, "size": 32, "snapshot_every": SNAPSHOT_EVERY,
            "regularizers": REGULARIZERS}


@dataclass(frozen=True)
class Run:
    """A finished job, its report and items, and what was seen while it ran."""

    job: dict
    report: dict
    items: list[dict]
    seen: list[dict]  # the job as polled while it ran


def post(session: requests.Session, url: str, body: dict) -> str:
    response = session.post(f"{url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def follow(session: requests.Session, url: str, job_id: str, watch=None,
           timeout: float = 240) -> Run:
    """Poll the job until it is final (calling `watch(job)` each time); the finished run."""
    seen = []

    def poll() -> dict:
        job = session.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] not in FINAL:
            seen.append(job)
            if watch is not None:
                watch(job)
        return job

    job = wait_until(f"job {job_id} final", poll, until=lambda job: job["status"] in FINAL,
                     timeout=timeout, every=0.05)
    report = session.get(f"{url}/v1/jobs/{job_id}/report", timeout=30)
    assert report.status_code == 200, report.text
    return Run(job, report.json(), all_items(session, url, job_id, limit=100), seen)


def load(url: str) -> bytes:
    response = requests.get(url, timeout=30)  # signed URLs: no key
    assert response.status_code == 200, (url, response.text[:200])
    return response.content


@pytest.fixture(scope="module")
def model(tiny_weights) -> torch.nn.Module:
    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(load_file(str(tiny_weights)))
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def class_run(api_url, tiny_model) -> Run:
    """The class visualization on the shared stack, uninterrupted (120 s tasks)."""
    session = requests.Session()
    return follow(session, api_url, post(session, api_url, class_spec(tiny_model)))


@dataclass(frozen=True)
class Continued:
    run: Run
    attempts: int  # the most runs of the job's chunk seen while it ran
    checkpointed: bool  # its checkpoint was seen in storage


@pytest.fixture(scope="module")
def own_stack(redis_server, tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """A worker, the reconciler, the scheduler and an API of their own, with 4 s tasks: the
    API's URL and the environment. Redis database 11: the shared backends use 1 and 2."""
    root = tmp_path_factory.mktemp("visualize-stack")
    env = stack_env(f"{redis_server}/11", (root / "storage").as_uri(), None,
                    **{**WORKER_ENV, "SALIENCY_TASK_TIME_LIMIT_S": str(TASK_TIME_LIMIT_S)},
                    SALIENCY_DATA_DIR=str(root / "data"))
    worker = start_worker(env, LOGS, name="worker-visualize-limit")
    reconciler = start_reconciler(env, LOGS, name="reconciler-visualize-limit")
    beat = start_beat(env, LOGS, name="beat-visualize-limit")
    api = start_api(env, LOGS)
    try:
        yield api.url, env
    finally:
        api.stop()
        beat.stop()
        reconciler.stop()
        worker.stop()


@pytest.fixture(scope="module")
def continued(own_stack, tiny_weights) -> Continued:
    """The class visualization on the stack of short tasks, its chunk watched as it runs."""
    url, env = own_stack
    session = requests.Session()
    assert register(url, MODEL_SPEC, tiny_weights, session).status_code == 201
    assert model_ready(session, url, MODEL_SPEC["name"])["status"] == "ready"
    settings = Settings.from_env(env)
    storage = make_storage(settings)
    chunks = Chunks(redis.Redis.from_url(settings.redis_url, decode_responses=True))
    job_id = post(session, url, class_spec(MODEL_SPEC["name"]))
    checkpoint = JobKeys("default", job_id).checkpoint(0)
    seen = {"attempts": 0, "checkpointed": False}

    def watch(job: dict) -> None:
        states = chunks.states(job_id)
        if states:
            seen["attempts"] = max(seen["attempts"], states[0].attempts)
        seen["checkpointed"] = seen["checkpointed"] or storage.exists(checkpoint)

    return Continued(follow(session, url, job_id, watch), seen["attempts"],
                     seen["checkpointed"])


def test_progress_counts_steps(class_run):
    final = class_run.job["progress"]
    assert (final["total"], final["done"]) == (STEPS, STEPS)
    assert final["items"] == {"total": 1, "done": 1, "failed": 0}
    during = [job["progress"] for job in class_run.seen if job["status"] == "running"]
    done = [p["done"] for p in during]
    assert all(p["total"] == STEPS for p in during)
    assert done == sorted(done)
    assert any(0 < d < STEPS for d in done), done  # seen part-way, in steps
    assert all(d % SNAPSHOT_EVERY == 0 for d in done), done  # whole calls of 8 steps
    assert all(p["items"]["done"] == 0 for p in during if p["done"] < STEPS)


def real_logits(model: torch.nn.Module) -> np.ndarray:
    """The class's logit on the example photos, resized and centre-cropped to 32 px."""
    xs = []
    for path in sorted(EXAMPLES.glob("*.[pj][np]g")):
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = 32 / min(image.size)
            image = image.resize((max(32, round(image.width * scale)),
                                  max(32, round(image.height * scale))), Image.BILINEAR)
            left, top = (image.width - 32) // 2, (image.height - 32) // 2
            pixels = np.asarray(image.crop((left, top, left + 32, top + 32)), np.float32)
        xs.append(((pixels / 255 - MEAN) / STD).transpose(2, 0, 1))
    assert len(xs) == 3
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(xs)))[:, CLASS].numpy()


def test_the_class_logit_climbs_far_above_its_start_and_real_images(class_run, model):
    (entry,) = class_run.report["items"]
    assert class_run.report["kind"] == "visualize" and entry["objective"] == {"class": CLASS}
    curve = entry["curve"]
    assert len(curve) == STEPS and entry["final"] == curve[-1]
    (item,) = class_run.items
    image = np.load(io.BytesIO(load(item["outputs"][0]["npy"])))
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    with torch.no_grad():
        final = float(model(torch.from_numpy(image)[None])[0, CLASS])
    real = real_logits(model)
    spread = float(real.max() - real.min())
    assert final > curve[0] + 5 * spread, (final, curve[0], real)
    assert final > real.max() + 2 * spread, (final, real)


def test_the_outputs_are_listed_and_load(class_run):
    (item,) = class_run.items
    assert item["status"] == "succeeded" and item["index"] == 0
    (out,) = item["outputs"]
    assert out["method"] == "visualize"
    assert len(out["snapshots"]) == STEPS // SNAPSHOT_EVERY
    for url in [out["png"], class_run.report["items"][0]["png"], *out["snapshots"]]:
        with Image.open(io.BytesIO(load(url))) as picture:
            assert picture.size == (32, 32) and picture.mode == "RGB"
    assert json.loads(load(out["curve"])) == class_run.report["items"][0]["curve"]


@pytest.mark.chaos  # make test: tests/worker/test_visualize_resume.py, without the stack
def test_a_job_continues_from_its_checkpoint_across_tasks_to_the_same_image(
        continued, class_run):
    run = continued.run
    assert run.job["status"] == "succeeded", run.job
    assert continued.checkpointed
    assert continued.attempts >= 2  # the chunk ran in more than one task
    (item,) = run.items
    (reference,) = class_run.items
    got = np.load(io.BytesIO(load(item["outputs"][0]["npy"])))
    want = np.load(io.BytesIO(load(reference["outputs"][0]["npy"])))
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
    np.testing.assert_allclose(run.report["items"][0]["curve"],
                               class_run.report["items"][0]["curve"], rtol=1e-5, atol=1e-6)
    assert len(item["outputs"][0]["snapshots"]) == STEPS // SNAPSHOT_EVERY
    assert (run.job["progress"]["total"], run.job["progress"]["done"]) == (STEPS, STEPS)


@dataclass(frozen=True)
class Cancelled:
    run: Run
    running: dict  # the pending item with snapshots seen before the job ended


@pytest.fixture(scope="module")
def cancelled(api_url, tiny_model) -> Cancelled:
    """Two objectives in batches of one (two chunks), cancelled once the first item shows a
    snapshot."""
    session = requests.Session()
    body = {"kind": "visualize", "model": tiny_model, "objective": [{"class": 1}, {"class": 2}],
            "batch": 1, "steps": 800, "snapshot_every": SNAPSHOT_EVERY, "size": 32,
            "regularizers": REGULARIZERS}
    job_id = post(session, api_url, body)
    shown = wait_until("an item showing a snapshot", lambda: [
        i for i in session.get(f"{api_url}/v1/jobs/{job_id}/items", timeout=10).json()["items"]
        if i["status"] == "pending" and i["outputs"] and i["outputs"][0]["snapshots"]],
        every=0.05)
    assert session.delete(f"{api_url}/v1/jobs/{job_id}", timeout=10).status_code == 200
    return Cancelled(follow(session, api_url, job_id), shown[0])


def test_snapshots_show_while_the_job_runs(cancelled):
    item = cancelled.running
    assert item["index"] == 0 and item["status"] == "pending"
    (out,) = item["outputs"]
    assert out["method"] == "visualize" and out["png"] is None and out["npy"] is None
    for url in out["snapshots"]:
        with Image.open(io.BytesIO(load(url))) as picture:
            assert picture.size == (32, 32)
    assert json.loads(load(out["curve"]))  # the curve so far


def test_a_job_cancelled_mid_way_lists_its_unfinished_items_as_cancelled(cancelled):
    run = cancelled.run
    assert run.job["status"] == "cancelled" and run.job["error"] == "cancelled by the client"
    assert 0 < run.job["progress"]["done"] < run.job["progress"]["total"] == 1600
    assert [(i["index"], i["status"]) for i in run.items] == [(0, "cancelled"),
                                                              (1, "cancelled")]
    assert run.report == {"kind": "visualize", "objective": [{"class": 1}, {"class": 2}],
                          "steps": 800, "items": []}
