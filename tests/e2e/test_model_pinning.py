"""A job runs on the model record it was accepted for, or not at all.

The stack here starts without its worker, so jobs stay queued (their models `validating`)
while their models are deleted or registered again under the same name; then the worker and
the scheduler start. Jobs of every kind, and a data-set job, on a model registered again
fail saying so — they never run on the new model — and a job on a deleted model fails
saying that; a job on an untouched model runs. Redis database 12: the shared backends use
1 and 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from stacks import LOGS, MODEL_SPEC, WORKER_ENV, register
from waiting import job_final

from devstack import Service, stack_env, start_api, start_beat, start_reconciler, start_worker
from e2e.helpers import image_bytes, submit


@dataclass
class HeldStack:
    """An API whose worker, reconciler and scheduler start only when `start()` is called."""

    url: str
    env: dict[str, str]
    datasets: Path
    services: list[Service]

    def start(self) -> None:
        self.services.append(start_worker(self.env, LOGS, name="worker-pinning"))
        self.services.append(start_reconciler(self.env, LOGS, name="reconciler-pinning"))
        self.services.append(start_beat(self.env, LOGS, name="beat-pinning"))


@pytest.fixture(scope="module")
def held(redis_server, tmp_path_factory) -> Iterator[HeldStack]:
    root = tmp_path_factory.mktemp("pinning-stack")
    datasets = root / "datasets"
    datasets.mkdir()
    env = stack_env(f"{redis_server}/12", (root / "storage").as_uri(), None, **WORKER_ENV,
                    SALIENCY_DATA_DIR=str(root / "data"),
                    SALIENCY_DATASET_ROOTS=datasets.as_uri())
    api = start_api(env, LOGS)
    stack = HeldStack(api.url, env, datasets, [api])
    try:
        yield stack
    finally:
        for service in reversed(stack.services):
            service.stop()


def _register(stack: HeldStack, name: str, weights: Path) -> None:
    response = register(stack.url, {**MODEL_SPEC, "name": name}, weights)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "validating"


def _jobs_of_every_kind(stack: HeldStack, session: requests.Session, model: str) -> dict:
    """An attribution, a top-activations, a visualize and a data-set job on `model`."""
    picture = [("a.png", image_bytes(1, size=32))]
    folder = stack.datasets / model
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.png").write_bytes(image_bytes(10 + i, size=32))
    specs = {
        "attribution": (submit, {"model": model, "methods": ["gradient"]}),
        "top_activations": (submit, {"kind": "top_activations", "model": model,
                                     "layer": "layer1", "channels": [0], "k": 1}),
        "visualize": (submit, {"kind": "visualize", "model": model,
                               "objective": {"class": 1}, "steps": 8, "size": 32}),
    }
    ids = {}
    for kind, (send, spec) in specs.items():
        response = send(session, stack.url, spec, picture)
        assert response.status_code == 202, (kind, response.text)
        ids[kind] = response.json()["id"]
    response = session.post(f"{stack.url}/v1/jobs", timeout=30, json={
        "model": model, "dataset": {"prefix": folder.as_uri()}})
    assert response.status_code == 202, response.text
    ids["data set"] = response.json()["id"]
    return ids


def test_a_job_never_runs_on_a_model_deleted_or_registered_again_after_it_was_accepted(
        held, tiny_weights):
    session = requests.Session()
    for name in ("pin-replaced", "pin-deleted", "pin-kept"):
        _register(held, name, tiny_weights)
    replaced = _jobs_of_every_kind(held, session, "pin-replaced")
    deleted = submit(session, held.url, {"model": "pin-deleted", "methods": ["gradient"]},
                     [("a.png", image_bytes(2, size=32))]).json()["id"]
    kept = submit(session, held.url, {"model": "pin-kept", "methods": ["gradient"]},
                  [("a.png", image_bytes(3, size=32))]).json()["id"]

    for name in ("pin-replaced", "pin-deleted"):
        assert session.delete(f"{held.url}/v1/models/{name}", timeout=10).status_code == 204
    _register(held, "pin-replaced", tiny_weights)  # the same weights, a new registration
    held.start()

    for kind, job_id in replaced.items():
        job = job_final(session, held.url, job_id, timeout=120)
        assert job["status"] == "failed", (kind, job)
        assert job["error"].startswith("model 'pin-replaced' was registered again after this "
                                       "job was submitted"), (kind, job["error"])
        assert job["progress"]["done"] == 0, (kind, job)
    job = job_final(session, held.url, deleted, timeout=120)
    assert job["status"] == "failed", job
    assert job["error"] == "model 'pin-deleted' was deleted after this job was submitted"
    assert job_final(session, held.url, kept, timeout=120)["status"] == "succeeded"
    # The model registered again serves the jobs submitted since.
    again = submit(session, held.url, {"model": "pin-replaced", "methods": ["gradient"]},
                   [("a.png", image_bytes(4, size=32))]).json()["id"]
    assert job_final(session, held.url, again, timeout=120)["status"] == "succeeded"
