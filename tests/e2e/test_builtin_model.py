"""The built-in efficientnet_lite0 through the whole service, as a fresh `make run` has it.

The session's shared stack runs with built-in models off (for speed), so this module starts
its own worker and API with nothing configured beyond Redis and storage: the API records the
built-in model (`validating`) before it answers, a worker converts the package's weights and
validates it, and a job on the example photo of a cat — sent at once, without waiting for
the model — comes back with maps and the prediction with its class name. That worker logs
in JSON (`SALIENCY_LOG_FORMAT=json`, as in the containers), and its log is checked line by line.
The built-in model's name is reserved, and a tenant's model of that name never replaces it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import redis
import requests
from PIL import Image
from stacks import register
from waiting import job_final

from api.auth import DEFAULT_TENANT
from devstack import ROOT, stack_env, start_api, start_worker
from e2e.helpers import all_items, submit
from shared.examples import get_example
from shared.spec.model import parse_model_spec
from shared.state.modelstore import ModelRecord, ModelStatus, ModelStore

LOGS = ROOT / "test-output" / "logs"
WORKER_LOG = LOGS / "worker-builtin.log"
METHODS = ["gradient", "guided_backprop", "deconvnet"]
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def builtin_api(redis_server, tmp_path_factory) -> Iterator[str]:
    """A worker and an API on default settings (built-in models on), fresh data dir."""
    root = tmp_path_factory.mktemp("builtin-stack")
    # Database 3: the shared backends use 1 and 2 of the same Redis server.
    env = stack_env(f"{redis_server}/3", (root / "storage").as_uri(), None,
                    SALIENCY_DATA_DIR=str(root / "data"), SALIENCY_LOG_FORMAT="json")
    WORKER_LOG.unlink(missing_ok=True)  # this run's lines only
    worker = start_worker(env, LOGS, name="worker-builtin")
    try:
        api = start_api(env, LOGS)
        yield api.url
        api.stop()
    finally:
        worker.stop()


def test_the_builtin_model_is_listed_with_nothing_configured(builtin_api):
    models = requests.get(f"{builtin_api}/v1/models", timeout=10).json()["models"]
    (model,) = [m for m in models if m["name"] == "efficientnet_lite0"]
    assert model["builtin"] is True and model["format"] == "safetensors"
    assert model["status"] in ("validating", "ready")
    assert model["architecture"] == "timm:efficientnet_lite0" and model["num_classes"] == 1000
    assert (model["resize"], model["input_size"]) == (256, 224)
    assert len(model["class_names"]) == 1000 and model["class_names"][285] == "Egyptian cat"


def test_a_job_on_the_cat_returns_maps_and_a_named_prediction(builtin_api):
    session = requests.Session()
    example = get_example("chelsea")
    spec = {"model": "efficientnet_lite0", "methods": METHODS}
    response = submit(session, builtin_api, spec, [(example.filename, example.read_bytes())])
    assert response.status_code == 202, response.text
    job = job_final(session, builtin_api, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    echoed = [{"name": "gradient", "render": "heatmap"},  # with their defaults filled in
              {"name": "guided_backprop", "rule": "relu", "render": "signed"},
              {"name": "deconvnet", "rule": "relu", "render": "signed"}]
    assert (job["model"], job["methods"], job["target"]) == ("efficientnet_lite0", echoed,
                                                             "predicted")

    (item,) = all_items(session, builtin_api, job["id"])
    prediction = item["prediction"]
    assert 281 <= prediction["class"] <= 285 and 0 < prediction["score"] <= 1
    assert prediction["label"] in CATS
    assert [o["method"] for o in item["outputs"]] == METHODS
    arrays = {}
    for output in item["outputs"]:
        assert output["target"] == {"class": prediction["class"]}
        # Every ReLU6 application (33 of them) went through the method's rule.
        coverage = output["coverage"]
        assert coverage["relu_calls"] == coverage["overridden"] >= 33, output
        assert coverage["applied"] > 0, output
        raw = session.get(output["npy"], timeout=30)
        assert raw.status_code == 200
        arrays[output["method"]] = np.load(io.BytesIO(raw.content))
        for kind in ("png", "overlay"):
            png = session.get(output[kind], timeout=30)
            assert png.status_code == 200
            assert Image.open(io.BytesIO(png.content)).size == (224, 224)
    for method, values in arrays.items():
        assert values.shape == (3, 224, 224) and values.dtype == np.float32, method
        assert np.isfinite(values).all() and np.abs(values).max() > 0, method
    # DeconvNet passes only positive gradients through every ReLU6, the plain gradient does not.
    assert not np.allclose(arrays["deconvnet"], arrays["gradient"])


def test_the_worker_logs_one_json_object_a_line(builtin_api):
    """Run after the job above: Celery and the pool child both log through shared.logs, so
    every line of the worker's output is one JSON object."""
    records = []
    for line in WORKER_LOG.read_text().splitlines():
        if line.strip():
            record = json.loads(line)  # fails on any line that is not JSON
            assert {"time", "level", "logger", "message"} <= set(record), record
            records.append(record)
    messages = [r["message"] for r in records]
    assert "model _builtin/efficientnet_lite0 is ready" in messages  # its validation
    assert any(m.endswith(" ready.") for m in messages)  # Celery's own
    assert any(m.startswith("worker process warmed up") for m in messages)  # the pool child
    assert any("saliency.run_chunk" in m and "succeeded" in m for m in messages)


def test_a_builtin_models_name_is_reserved_and_the_builtin_stays_listed(builtin_api,
                                                                         tiny_weights):
    session = requests.Session()
    spec = {"name": "efficientnet_lite0", "architecture": "resnet18", "num_classes": 10,
            "input_size": 32, "resize": 32}
    response = register(builtin_api, spec, tiny_weights, session)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict" and "reserved for a built-in model" in error["message"]
    models = session.get(f"{builtin_api}/v1/models", timeout=10).json()["models"]
    assert [(m["name"], m["builtin"]) for m in models] == [("efficientnet_lite0", True)]


def test_a_tenants_model_named_like_the_builtin_is_listed_deletable_and_never_used(
        builtin_api, redis_server):
    """A tenant's record of a built-in model's name, registered before such names were
    reserved: listed beside the built-in model, deletable, and never what a job runs on."""
    models = ModelStore(redis.Redis.from_url(f"{redis_server}/3", decode_responses=True))
    spec = parse_model_spec({"name": "efficientnet_lite0", "architecture": "resnet18",
                             "num_classes": 10})
    models.put(DEFAULT_TENANT, ModelRecord(
        spec=spec, format="safetensors", artifact="models/old", sha256="", size=0,
        created_at="2025-01-01T00:00:00.000Z", builtin=False, status=ModelStatus.READY),
        replace=False)
    session = requests.Session()
    listed = session.get(f"{builtin_api}/v1/models", timeout=10).json()["models"]
    assert [(m["name"], m["builtin"]) for m in listed] == [("efficientnet_lite0", True),
                                                           ("efficientnet_lite0", False)]
    shown = session.get(f"{builtin_api}/v1/models/efficientnet_lite0", timeout=10).json()
    assert shown["builtin"] is True and shown["num_classes"] == 1000

    example = get_example("chelsea")
    response = submit(session, builtin_api, {"model": "efficientnet_lite0"},
                      [(example.filename, example.read_bytes())])
    assert response.status_code == 202, response.text
    job = job_final(session, builtin_api, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    (item,) = all_items(session, builtin_api, job["id"])
    assert item["prediction"]["label"] in CATS  # the built-in model's classes, not the other's

    assert session.delete(f"{builtin_api}/v1/models/efficientnet_lite0",
                          timeout=10).status_code == 204
    listed = session.get(f"{builtin_api}/v1/models", timeout=10).json()["models"]
    assert [(m["name"], m["builtin"]) for m in listed] == [("efficientnet_lite0", True)]
    response = session.delete(f"{builtin_api}/v1/models/efficientnet_lite0", timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
