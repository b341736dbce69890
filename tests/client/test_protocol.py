"""The SDK's sans-IO core with no network: every API call's request, its parse of a recorded
answer, and the error a recorded error answer raises. Each recorded JSON answer is first
checked against the API's own contract (`api/openapi.json`) for its route and status."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator
from saliency_client import protocol
from saliency_client.errors import ApiError
from saliency_client.exchange import Endpoint, Exchange, Request, RetryPolicy
from saliency_client.types import Item, JobStatus, Method, Model, Roots

DOCUMENT = json.loads((Path(__file__).parents[2] / "api" / "openapi.json").read_text())
ENDPOINT = Endpoint("http://api.test", "secret")
ONCE = RetryPolicy(attempts=1, max_wait=0)  # no retry: the first answer is final
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16

JOB = {"id": "j1", "status": "running", "kind": "attribution", "model": "tiny",
       "progress": {"total": 3, "done": 1, "failed": 1, "finalizing": True},
       "created_at": "2026-12-05T03:00:00Z", "started_at": "2026-12-05T03:00:01Z",
       "finished_at": None, "error": None}
MODEL = {"name": "tiny", "num_classes": 3, "architecture": "resnet18", "input_size": 32,
         "resize": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
         "class_names": ["cat", "dog", "fox"], "format": "safetensors", "sha256": "ab" * 32,
         "size": 1234, "created_at": "2026-12-05T03:00:00Z", "builtin": False,
         "status": "ready", "error": None}
ITEM = {"index": 4, "input": "s3://b/cat.png", "status": "succeeded", "error": None,
        "prediction": {"class": 1, "score": 0.9, "label": "dog"},
        "outputs": [{"method": "gradient", "target": {"class": 1},
                     "npy": "http://api.test/v1/jobs/j1/maps/4_0.npy?expires=9&sig=ab",
                     "png": "http://api.test/v1/jobs/j1/maps/4_0.png?expires=9&sig=cd"}]}
METHODS = {"methods": [
    {"name": "gradient", "description": "Simonyan et al. 2014", "params": []},
    {"name": "smoothgrad", "description": "Smilkov et al. 2017", "params": [
        {"name": "samples", "type": "int", "default": 25, "description": "n", "minimum": 1}]}]}
REPORT = {"kind": "visualize", "items": [{"index": 0, "objective": {"channel": 3},
                                          "curve": [0.1, 0.4], "png": "http://api.test/v.png",
                                          "final": 0.4}]}


def recorded(route: str, method: str, status: int, body: object = None, *,
             content: bytes | None = None, headers: dict[str, str] | None = None
             ) -> httpx.Response:
    """An answer of `method route`: the contract must list `status` for it, and a JSON
    `body` must match the contract's schema of that answer."""
    answer = DOCUMENT["paths"][route][method.lower()]["responses"][str(status)]
    if content is not None:
        return httpx.Response(status, content=content, headers=headers)
    schema = answer["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DOCUMENT["components"]}).validate(body)
    return httpx.Response(status, json=body, headers=headers)


def error(route: str, method: str, status: int, code: str, message: str) -> httpx.Response:
    return recorded(route, method, status, {"error": {"code": code, "message": message}})


def answer(call: protocol.Call, response: httpx.Response) -> object:
    """Drive the core as a transport does, the API answering `response`: the parsed value,
    or the error the core raises."""
    exchange = Exchange(ENDPOINT, ONCE, call.request)
    assert exchange.settle(None, response) is None
    return call.parse(response)


def sent(request: Request) -> tuple[str, str, dict[str, str]]:
    """Method, URL and headers of the first attempt of `request`."""
    out = Exchange(ENDPOINT, ONCE, request).outgoing
    return out.method, out.url, out.headers


def parquet(rows: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf)
    return buf.getvalue()


def test_submit_files_as_multipart_with_one_idempotency_key():
    call = protocol.submit([PNG], model="tiny", methods=["gradient"], target="class:2",
                           reduce=None, outputs=None, dataset=None, seed=3, kind=None,
                           idempotency_key="k1", retention_s=60)
    r = call.request
    assert sent(r) == ("POST", "http://api.test/v1/jobs",
                       {"Idempotency-Key": "k1", "Authorization": "Bearer secret"})
    assert r.may_repeat and r.json is None
    assert json.loads(r.data["spec"]) == {"model": "tiny", "methods": ["gradient"],
                                          "target": {"class": 2}, "seed": 3, "retention_s": 60}
    assert r.files == [("images", ("input-00000.png", PNG, "image/png"))]
    assert answer(call, recorded("/v1/jobs", "POST", 202, {"id": "j1", "status": "queued"})) == "j1"


def test_submit_uris_as_json_with_a_fresh_key_each():
    def call():
        return protocol.submit(["s3://b/cat.png"], model="tiny", methods=None, target=None,
                               reduce=None, outputs=None, dataset=None, seed=None, kind=None,
                               idempotency_key=None)

    first, second = call().request, call().request
    assert first.json == {"model": "tiny", "inputs": [{"uri": "s3://b/cat.png"}]}
    assert first.data is None and first.files is None
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    with pytest.raises(ApiError) as info:
        answer(call(), error("/v1/jobs", "POST", 400, "invalid_spec", "model: no model 'x'"))
    assert (info.value.status, info.value.code, info.value.message) == (
        400, "invalid_spec", "model: no model 'x'")


def test_upload_overwrites_so_it_may_repeat_and_a_too_large_batch_halves(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(PNG)
    batch = [(name, tmp_path / name) for name in ("a.png", "b.png", "c.png")]
    call = protocol.upload(batch, "pets")
    assert sent(call.request)[:2] == ("POST", "http://api.test/v1/uploads")
    assert call.request.may_repeat and call.request.data == {"prefix": "pets"}
    assert [part for part, _ in call.request.files] == ["files"] * 3
    assert call.request.files[0][1] == ("a.png", PNG, "image/png")
    stored = {"prefix": "file:///srv/t/pets/", "uris": ["file:///srv/t/pets/a.png"]}
    assert answer(call, recorded("/v1/uploads", "POST", 201, stored)) == stored
    with pytest.raises(ApiError) as info:
        answer(call, error("/v1/uploads", "POST", 413, "too_large", "body over 16 MiB"))
    assert protocol.halves(batch, info.value) == (batch[:1], batch[1:])
    assert protocol.halves(batch[:1], info.value) is None  # one file: nothing to split
    assert protocol.halves(batch, ApiError(415, "unsupported_media_type", "x")) is None


def test_roots_and_webhook_secret():
    call = protocol.roots()
    assert sent(call.request) == ("GET", "http://api.test/v1/roots",
                                  {"Authorization": "Bearer secret"})
    roots = answer(call, recorded("/v1/roots", "GET", 200, {
        "storage": "file:///srv/t/", "roots": ["s3://sets/"]}))
    assert roots == Roots("file:///srv/t/", ("s3://sets/",))
    call = protocol.webhook_secret()
    assert sent(call.request)[:2] == ("GET", "http://api.test/v1/webhooks/secret")
    assert answer(call, recorded("/v1/webhooks/secret", "GET", 200, {
        "secret": "whsec_abc", "events": ["job.finished"]})) == "whsec_abc"
    with pytest.raises(ApiError, match="not_found"):
        answer(call, error("/v1/webhooks/secret", "GET", 404, "not_found", "webhooks off"))


def test_register_model_sends_the_spec_and_its_one_artifact(tmp_path):
    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes(b"weights")
    call = protocol.register_model("tiny", num_classes=3, weights=weights, program=None,
                                   bundle=None, architecture="resnet18", input_size=32)
    assert sent(call.request)[:2] == ("POST", "http://api.test/v1/models")
    assert not call.request.may_repeat
    assert json.loads(call.request.data["spec"]) == {
        "name": "tiny", "num_classes": 3, "architecture": "resnet18", "input_size": 32}
    assert call.request.files == [
        ("weights", ("tiny.safetensors", b"weights", "application/octet-stream"))]
    model = answer(call, recorded("/v1/models", "POST", 201, MODEL))
    assert model == Model("tiny", "resnet18", 3, ("cat", "dog", "fox"), MODEL)
    with pytest.raises(ApiError, match="conflict"):
        answer(call, error("/v1/models", "POST", 409, "conflict", "model 'tiny' exists"))


def test_models_model_and_methods():
    call = protocol.models()
    assert sent(call.request)[:2] == ("GET", "http://api.test/v1/models")
    assert [m.name for m in answer(call, recorded("/v1/models", "GET", 200,
                                                  {"models": [MODEL]}))] == ["tiny"]
    call = protocol.model("tiny")
    assert sent(call.request)[:2] == ("GET", "http://api.test/v1/models/tiny")
    assert answer(call, recorded("/v1/models/{name}", "GET", 200, MODEL)).class_names == (
        "cat", "dog", "fox")
    with pytest.raises(ApiError, match="no model"):
        answer(call, error("/v1/models/{name}", "GET", 404, "not_found", "no model 'tiny'"))
    call = protocol.methods()
    assert sent(call.request)[:2] == ("GET", "http://api.test/v1/methods")
    methods = answer(call, recorded("/v1/methods", "GET", 200, METHODS))
    assert [m.name for m in methods] == ["gradient", "smoothgrad"]
    assert isinstance(methods[0], Method) and methods[1].defaults == {"samples": 25}


def test_layers_of_a_model():
    call = protocol.layers("tiny")
    assert sent(call.request)[:2] == ("GET", "http://api.test/v1/models/tiny/layers")
    body = {"model": "tiny", "input_size": [32, 32], "default": "layer1",
            "default_problem": None, "max_pooling_recorded": True, "layers": [
                {"name": "conv1", "module": "Conv2d", "runs": 1, "shape": [8, 16, 16],
                 "layout": "NCHW", "channels": 8, "grid": [16, 16], "prefix": 0,
                 "usable": True, "default": False, "max_pool_before": False, "problem": None},
                {"name": "layer1", "module": "Sequential", "runs": 1, "shape": [8, 8, 8],
                 "layout": "NCHW", "channels": 8, "grid": [8, 8], "prefix": 0,
                 "usable": True, "default": True, "max_pool_before": True, "problem": None}]}
    layers = answer(call, recorded("/v1/models/{name}/layers", "GET", 200, body))
    assert layers.default == "layer1" and [x.name for x in layers.usable] == ["conv1", "layer1"]
    assert layers.layers[1].shape == (8, 8, 8) and layers.layers[1].max_pool_before is True
    with pytest.raises(ApiError, match="validating"):
        answer(call, error("/v1/models/{name}/layers", "GET", 409, "not_ready",
                           "model 'tiny' is validating"))


def test_urls_of_the_pages():
    assert protocol.page_url("http://api.test", "j1") == "http://api.test/jobs/j1"
    assert protocol.report_url("http://api.test", "j1") == "http://api.test/jobs/j1/report"


def test_job_and_cancel_answer_the_job_state():
    for call, method in ((protocol.job("j1"), "GET"), (protocol.cancel("j1"), "DELETE")):
        assert sent(call.request)[:2] == (method, "http://api.test/v1/jobs/j1")
        assert call.request.may_repeat
        state = answer(call, recorded("/v1/jobs/{job_id}", method, 200, JOB))
        assert (state.id, state.status, state.kind) == ("j1", JobStatus.RUNNING, "attribution")
        assert (state.progress.done, state.progress.failed) == (1, 1)
        assert state.progress.finalizing and state.raw == JOB
        with pytest.raises(ApiError) as info:
            answer(call, error("/v1/jobs/{job_id}", method, 410, "expired", "job j1 expired"))
        assert (info.value.status, info.value.code) == (410, "expired")


def test_items_pages_by_cursor():
    first = protocol.items("j1", 50, None)
    assert first.request.params == {"limit": 50}
    assert sent(first.request)[:2] == ("GET", "http://api.test/v1/jobs/j1/items")
    assert protocol.items("j1", 50, "c2").request.params == {"limit": 50, "cursor": "c2"}
    page, cursor = answer(first, recorded("/v1/jobs/{job_id}/items", "GET", 200,
                                          {"items": [ITEM], "next_cursor": "c2"}))
    assert cursor == "c2" and [type(i) for i in page] == [Item]
    assert page[0].index == 4 and page[0].outputs[0].method == "gradient"
    assert answer(first, recorded("/v1/jobs/{job_id}/items", "GET", 200,
                                  {"items": [], "next_cursor": None})) == ([], None)
    with pytest.raises(ApiError, match="invalid_spec.*cursor: not one"):
        answer(first, error("/v1/jobs/{job_id}/items", "GET", 400, "invalid_spec",
                            "cursor: not one this API gave"))


def test_results_as_rows_as_a_frame_and_as_a_file():
    route = "/v1/jobs/{job_id}/results"
    rows = protocol.result_rows("j1")
    assert rows.request.params == {"format": "jsonl"}
    assert sent(rows.request)[:2] == ("GET", "http://api.test/v1/jobs/j1/results")
    body = b'{"item": 0, "method": "gradient"}\n{"item": 1, "method": null, "error": "x"}\n'
    assert answer(rows, recorded(route, "GET", 200, content=body)) == [
        {"item": 0, "method": "gradient"}, {"item": 1, "method": None, "error": "x"}]
    frame = protocol.result_frame("j1")
    assert frame.request.params == {"format": "parquet"}
    parsed = answer(frame, recorded(route, "GET", 200, content=parquet(
        {"item": [0, 1], "method": ["gradient", None]})))
    assert list(parsed["item"]) == [0, 1] and parsed["method"].isna().tolist() == [False, True]
    assert protocol.results("j1", "csv") == Request("GET", "/v1/jobs/j1/results",
                                                    params={"format": "csv"})
    with pytest.raises(ApiError) as info:
        answer(rows, error(route, "GET", 409, "not_ready", "job j1 is running"))
    assert (info.value.status, info.value.code) == (409, "not_ready")


def test_report_and_its_files():
    call = protocol.report("j1")
    assert sent(call.request)[:2] == ("GET", "http://api.test/v1/jobs/j1/report")
    route = "/v1/jobs/{job_id}/report"
    assert answer(call, recorded(route, "GET", 200, REPORT)) == REPORT
    with pytest.raises(ApiError, match="not_ready"):
        answer(call, error(route, "GET", 409, "not_ready", "no report before the job ends"))
    signed = "http://api.test/v1/jobs/j1/report/files/grid.png?expires=9&sig=ab"
    assert sent(protocol.file(signed)) == ("GET", signed, {})  # signed: no key
    assert sent(protocol.file("https://s3.test/b/x.npy?X-Amz-Signature=s"))[2] == {}


def test_export():
    request = protocol.export("j1", "fiftyone", images=False)
    assert sent(request)[:2] == ("GET", "http://api.test/v1/jobs/j1/export")
    assert request.params == {"format": "fiftyone", "images": "false"}
    assert protocol.export("j1", "fiftyone", images=True).params["images"] == "true"


def test_every_api_call_of_the_core_is_tested_here():
    """A new call added to the core without a test here fails this test."""
    source = Path(__file__).read_text()
    calls = {name for name, value in vars(protocol).items()
             if callable(value) and getattr(value, "__module__", "") == protocol.__name__
             and not name.startswith("_") and name not in {"Call"}}
    assert calls and {name for name in calls if f"protocol.{name}(" not in source} == set()
