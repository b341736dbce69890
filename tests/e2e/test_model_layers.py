"""`GET /v1/models/{name}/layers` and the default projection of `top_activations`, resolved at
submission from the model's record, on a stack whose worker starts only later.

Before the worker starts, a registered model stays `validating`: its layers answer `409
not_ready` (the CLI says so and exits 3), and a top_activations job without methods keeps
DeconvNet, saying that the record does not say. Records written by older validations — one
before layers were recorded, one before max-pooling was — answer `409 conflict` and list
their layers with `max_pool_before` null. Another tenant's model is `404`. Once the worker
has validated the model, its layers list max-pooling per layer, and the default is DeconvNet
after resnet18's max-pool (`layer1`) and guided backprop before it (`conv1`), with the
reason echoed in the job and its report; methods given are kept as given. Redis database 5.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests
import torch
import torchvision
from stacks import ADMIN_KEY, API_KEYS, LOGS, MODEL_SPEC, OTHER_KEY, WORKER_ENV, register
from waiting import job_final, model_ready

from devstack import Service, stack_env, start_api, start_worker
from e2e.helpers import image_bytes
from shared.spec.model import parse_model_spec
from shared.spec.top_activations import NOT_RECORDED
from shared.state.modelstore import ModelRecord, ModelStatus, ModelStore, models_key

MODEL = "layers-tiny"
PICTURES = [("a.png", image_bytes(1, size=32)), ("b.png", image_bytes(2, size=32))]


@dataclass
class HeldStack:
    """An API (with keys) whose worker starts only when `start()` is called."""

    url: str
    env: dict[str, str]
    services: list[Service]

    def start(self) -> None:
        self.services.append(start_worker(self.env, LOGS, name="worker-layers"))

    def session(self, key: str = ADMIN_KEY) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        return session

    def models(self) -> ModelStore:
        return ModelStore(redis.Redis.from_url(self.env["REDIS_URL"], decode_responses=True))


@pytest.fixture(scope="module")
def held(redis_server, tmp_path_factory, tiny_weights) -> Iterator[HeldStack]:
    root = tmp_path_factory.mktemp("layers-stack")
    env = stack_env(f"{redis_server}/5", (root / "storage").as_uri(), None, **WORKER_ENV,
                    SALIENCY_DATA_DIR=str(root / "data"), SALIENCY_API_KEYS=API_KEYS)
    api = start_api(env, LOGS)
    stack = HeldStack(api.url, env, [api])
    try:
        response = register(stack.url, {**MODEL_SPEC, "name": MODEL}, tiny_weights,
                            stack.session())
        assert response.status_code == 201 and response.json()["status"] == "validating"
        yield stack
    finally:
        for service in reversed(stack.services):
            service.stop()


def submit(session: requests.Session, url: str, spec: dict) -> dict:
    """Submit a top_activations job of two pictures; the job as accepted."""
    files = [("spec", (None, json.dumps({"kind": "top_activations", **spec}),
                       "application/json"))]
    files += [("images", (name, data)) for name, data in PICTURES]
    response = session.post(f"{url}/v1/jobs", files=files, timeout=30)
    assert response.status_code == 202, response.text
    return session.get(f"{url}/v1/jobs/{response.json()['id']}", timeout=10).json()


def old_record(held: HeldStack, name: str, keep_layers: bool) -> None:
    """Store a `ready` record as an older validation wrote it: without layers, or with
    layers but no max-pooling."""
    from worker.kinds.top_activations.feature_maps import model_layers

    torch.manual_seed(0)
    layers = model_layers(torchvision.models.resnet18(num_classes=10).eval(), 32)
    assert not layers.max_pooling_recorded
    spec = parse_model_spec({**MODEL_SPEC, "name": name})
    record = ModelRecord(spec, "safetensors", f"models/alice/{name}", "0" * 64, 1,
                         "2026-01-01T00:00:00Z", False, ModelStatus.READY, None, layers)
    raw = record.to_json()
    if not keep_layers:
        raw.pop("layers")
    held.models().redis.hset(models_key("alice"), name, json.dumps(raw))


def test_while_the_model_is_validated_its_layers_are_not_ready(held):
    response = held.session().get(f"{held.url}/v1/models/{MODEL}/layers", timeout=10)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert error["message"].startswith(f"model '{MODEL}' is being validated")


def test_the_cli_says_so_and_exits_3(held, capsys):
    from saliency_client import cli

    code = cli.main(["--url", held.url, "--api-key", ADMIN_KEY, "layers", MODEL])
    assert code == cli.EXIT_API
    err = capsys.readouterr().err
    assert err.startswith("saliency: error: not_ready (HTTP 409): model 'layers-tiny' is being "
                          "validated")


def test_another_tenants_model_and_an_unknown_one_are_not_found(held):
    for name, key in ((MODEL, OTHER_KEY), ("no-such-model", ADMIN_KEY)):
        response = held.session(key).get(f"{held.url}/v1/models/{name}/layers", timeout=10)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


def test_a_job_on_a_model_being_validated_keeps_deconvnet_and_says_why(held):
    job = submit(held.session(), held.url, {"model": MODEL, "layer": "conv1", "channels": [0],
                                            "k": 1})
    assert job["methods"] == [{"name": "deconvnet", "rule": "relu"}]
    assert job["methods_reason"] == NOT_RECORDED


def test_records_of_older_validations(held):
    old_record(held, "before-layouts", keep_layers=False)
    response = held.session().get(f"{held.url}/v1/models/before-layouts/layers", timeout=10)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert "validated before layers were recorded" in error["message"]
    assert "register it again" in error["message"]

    old_record(held, "before-max-pooling", keep_layers=True)
    response = held.session().get(f"{held.url}/v1/models/before-max-pooling/layers", timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["max_pooling_recorded"] is False
    assert {layer["max_pool_before"] for layer in answer["layers"]} == {None}
    assert {"conv1", "layer1"} <= {layer["name"] for layer in answer["layers"]
                                    if layer["usable"]}
    job = submit(held.session(), held.url, {"model": "before-max-pooling", "layer": "conv1",
                                            "channels": [0], "k": 1})
    assert (job["methods"], job["methods_reason"]) == (
        [{"name": "deconvnet", "rule": "relu"}], NOT_RECORDED)


def wait_validated(held: HeldStack, name: str) -> str:
    return model_ready(held.session(), held.url, name)["status"]


@pytest.fixture(scope="module")
def validated(held, tiny_weights) -> HeldStack:
    response = register(held.url, {**MODEL_SPEC, "name": "layers-invalid", "num_classes": 7},
                        tiny_weights, held.session())  # 10 classes' weights
    assert response.status_code == 201, response.text
    held.start()
    assert wait_validated(held, MODEL) == "ready"
    assert wait_validated(held, "layers-invalid") == "invalid"
    return held


def test_once_validated_the_layers_say_where_max_pooling_precedes(validated):
    response = validated.session().get(f"{validated.url}/v1/models/{MODEL}/layers", timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == MODEL and answer["input_size"] == [32, 32]
    assert answer["max_pooling_recorded"] is True and answer["default"] == "layer3"
    layers = {layer["name"]: layer for layer in answer["layers"]}
    assert [name for name, layer in layers.items() if layer["default"]] == ["layer3"]
    before = {name for name, layer in layers.items() if layer["max_pool_before"] is False}
    assert before == {"conv1", "bn1", "relu"}  # resnet18's stem, before its max-pool
    assert layers["conv1"] == {
        "name": "conv1", "module": "Conv2d", "runs": 1, "shape": [64, 16, 16],
        "layout": "NCHW", "channels": 64, "grid": [16, 16], "prefix": 0, "usable": True,
        "default": False, "max_pool_before": False, "problem": None}
    assert layers["fc"]["usable"] is False and layers["fc"]["layout"] is None
    assert layers["fc"]["problem"]


@pytest.mark.parametrize(("layer", "method", "reason", "alike"), [
    ("layer1", "deconvnet", "deconvnet: the default, as a max-pooling precedes layer 'layer1'",
     False),
    # conv1's output is linear in the image: a unit's projection is its filter whatever the
    # image, by any method, and the channel is warned about.
    ("conv1", "guided_backprop",
     "guided_backprop: the default, as no max-pooling precedes layer 'conv1'", True),
])
def test_the_default_projection_follows_the_layers_max_pooling(validated, layer, method,
                                                               reason, alike):
    session = validated.session()
    job = submit(session, validated.url, {"model": MODEL, "layer": layer, "channels": [0, 1],
                                          "k": 2})
    assert job["methods"] == [{"name": method, "rule": "relu"}]
    assert job["methods_reason"].startswith(reason)
    done = job_final(session, validated.url, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    report = session.get(f"{validated.url}/v1/jobs/{job['id']}/report", timeout=10).json()
    assert (report["methods"], report["methods_reason"]) == ([method], job["methods_reason"])
    assert [channel["channel"] for channel in report["channels"]] == [0, 1]
    for channel in report["channels"]:
        assert list(channel["top"][0]["projections"]) == [method]
        if not alike:
            assert "warnings" not in channel
            continue
        [warning] = channel["warnings"]
        assert warning.startswith(f"{method}: projected again on another of the top images, "
                                  f"channel {channel['channel']}'s units give the same picture "
                                  "(median cosine 1.000 over 2 units, measured)")


def test_methods_given_are_kept_without_a_reason(validated):
    job = submit(validated.session(), validated.url, {
        "model": MODEL, "layer": "conv1", "channels": [0], "k": 1, "methods": ["deconvnet"]})
    assert job["methods"] == [{"name": "deconvnet", "rule": "relu"}]  # defaults filled in
    assert "methods_reason" not in job
    response = validated.session().post(f"{validated.url}/v1/jobs", timeout=10, json={
        "kind": "top_activations", "model": MODEL, "layer": "conv1", "channels": [0],
        "methods_reason": "mine", "inputs": [{"uri": "file:///nowhere.png"}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("methods_reason: is not a field")


def test_the_record_is_what_the_listing_reads(validated):
    record = validated.models().get("alice", MODEL)
    assert record.layers.max_pooling_recorded
    listed = validated.session().get(f"{validated.url}/v1/models/{MODEL}/layers",
                                     timeout=10).json()
    assert listed == {"model": MODEL, **record.layers.api_json()}


def test_an_invalid_model_has_no_layers(validated):
    response = validated.session().get(f"{validated.url}/v1/models/layers-invalid/layers",
                                       timeout=10)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_model"
    assert error["message"].startswith("model 'layers-invalid' is invalid, it has no layers: ")
