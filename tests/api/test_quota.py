"""The queued-items quota at submission, on a real Redis: a job that can never fit is `413`,
one that does not fit now `429`, and a data set needs room for one item."""

from __future__ import annotations

import io

import pytest
import redis

from api import create_app
from shared.models.registry import register_model
from shared.settings import Settings
from shared.spec.model import parse_model_spec
from shared.state.jobschema import queued_key
from shared.state.modelstore import ModelStore
from shared.storage.interface import make_storage

MODEL = {"name": "m", "architecture": "resnet18", "num_classes": 10, "input_size": 32}


@pytest.fixture
def api(redis_server, tmp_path):
    url = f"{redis_server}/13"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    settings = Settings(storage_url=tmp_path.as_uri(), redis_url=url, max_queued_items=3,
                        dataset_roots=(tmp_path.as_uri(),))
    register_model(ModelStore(client), make_storage(settings), "default",
                   parse_model_spec(MODEL), "safetensors", io.BytesIO(b"weights"))
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.png").write_bytes(b"png")
    yield create_app(settings).test_client(), client, tmp_path.as_uri()
    client.flushdb()


def _job(root: str, n: int) -> dict:
    return {"model": "m", "methods": ["gradient"],
            "inputs": [{"uri": f"{root}/set/{i}.png"} for i in range(n)]}


def test_a_job_larger_than_the_quota_is_too_large_and_names_the_limit(api):
    client, r, root = api
    response = client.post("/v1/jobs", json=_job(root, 4))
    assert response.status_code == 413 and "Retry-After" not in response.headers
    error = response.get_json()["error"]
    assert error["code"] == "too_large"
    assert error["message"] == (
        "quota: this job's 4 items exceed the limit of 3 queued items per tenant "
        "(SALIENCY_MAX_QUEUED_ITEMS): it can never run; split it into jobs of at most 3 items")
    assert not r.keys("saliency:job:*")  # nothing stored


def test_a_job_that_fits_the_quota_but_not_now_waits(api):
    client, r, root = api
    assert client.post("/v1/jobs", json=_job(root, 2)).status_code == 202
    response = client.post("/v1/jobs", json=_job(root, 2))
    assert response.status_code == 429 and response.headers["Retry-After"] == "30"
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert int(r.get(queued_key("default"))) == 2


def test_a_data_set_needs_room_for_one_item(api):
    client, r, root = api
    body = {"model": "m", "methods": ["gradient"], "dataset": {"prefix": f"{root}/set/"}}
    r.set(queued_key("default"), 3)
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 429
    assert response.get_json()["error"]["message"] == (
        "quota: 3 items queued, and a data set's items would exceed the limit of 3 per tenant "
        "(SALIENCY_MAX_QUEUED_ITEMS); retry when some have run")
    r.set(queued_key("default"), 2)
    assert client.post("/v1/jobs", json=body).status_code == 202
