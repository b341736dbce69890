"""The whole path over HTTP — API, Redis, worker, storage — on file and S3 storage alike."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from waiting import job_final, wait_until

from e2e.helpers import (
    all_items,
    counts,
    download,
    image_bytes,
    npy_bytes,
    own_class_gradients,
    submit,
    url_path,
)

METHODS = ["gradient", "guided_backprop"]


def reference(model, inputs: list[bytes]):
    """The in-process engine's result on the same inputs (what the worker must reproduce)."""
    import torch

    from shared.spec.model import parse_model_spec
    from worker.engine.core import Engine
    from worker.models.build import build_model, preprocess_image

    spec = parse_model_spec(model.spec)
    xs = [
        torch.from_numpy(np.load(io.BytesIO(data))) if data.startswith(b"\x93NUMPY")
        else preprocess_image(Image.open(io.BytesIO(data)).convert("RGB"), spec.preprocessing)
        for data in inputs
    ]
    engine = Engine(build_model(spec, model.weights))
    return engine.attribute(torch.stack(xs), METHODS)


def check_items(stack, session, items, model, inputs: list[bytes]) -> None:
    expected = reference(model, inputs)
    assert [item["index"] for item in items] == list(range(len(inputs)))
    for item, want in zip(items, expected.images, strict=True):
        assert item["status"] == "succeeded" and item["error"] is None
        assert item["prediction"]["class"] == want.predicted_class
        assert item["prediction"]["score"] == pytest.approx(want.score, rel=1e-4)
        assert [(o["method"], o["target"]) for o in item["outputs"]] == [
            (m.method, m.target) for m in want.maps
        ]
        for out, amap in zip(item["outputs"], want.maps, strict=True):
            got = np.load(io.BytesIO(download(session, stack, out["npy"])))
            assert got.dtype == np.float32 and got.shape == amap.values.shape
            scale = float(np.abs(amap.values).max())
            np.testing.assert_allclose(got, amap.values, rtol=1e-4, atol=1e-5 * scale)
            for kind in ("png", "overlay"):
                png = download(session, stack, out[kind])
                assert Image.open(io.BytesIO(png)).size == (32, 32)


def test_uploads_of_each_format_match_the_engine(stack, stack_model, alice):
    rng = np.random.default_rng(7)
    inputs = [
        ("a.png", image_bytes(1, "PNG")),
        ("b.jpg", image_bytes(2, "JPEG")),
        ("c.webp", image_bytes(3, "WEBP", size=48)),
        ("d.npy", npy_bytes(rng.standard_normal((3, 32, 32)).astype(np.float32))),
    ]
    spec = {"model": stack_model.name, "methods": METHODS}
    response = submit(alice, stack.url, spec, inputs)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and response.headers["Location"] == f"/v1/jobs/{body['id']}"

    job = job_final(alice, stack.url, body["id"])
    assert job["status"] == "succeeded", job
    assert counts(job) == {"total": 4, "done": 4, "failed": 0}
    assert not job["progress"]["planning"] and not job["progress"]["finalizing"]
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["created_at"].endswith("Z") and job["error"] is None
    items = all_items(alice, stack.url, body["id"], limit=3)  # two pages
    assert [item["input"] for item in items] == [name for name, _ in inputs]
    check_items(stack, alice, items, stack_model, [data for _, data in inputs])


def test_every_grad_cam_output_names_its_layer_the_default_included(stack, stack_model, alice):
    """The tiny resnet18's layer4 is 1×1 at 32 px: the default is layer3, and its outputs say
    so (the job echoes the methods as given)."""
    import torch

    from shared.spec.methods import method_spec
    from shared.spec.model import parse_model_spec
    from worker.engine.core import Engine
    from worker.models.build import build_model

    x = np.random.default_rng(60).standard_normal((3, 32, 32)).astype(np.float32)
    methods = ["gradcam", {"name": "guided_gradcam", "layer": "layer2"}]
    response = submit(alice, stack.url, {"model": stack_model.name, "methods": methods,
                                         "outputs": ["npy"]}, [("a.npy", npy_bytes(x))])
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["methods"] == [
        {"name": "gradcam", "layer": None, "render": "cam"},
        {"name": "guided_gradcam", "layer": "layer2", "rule": "relu", "render": "signed"}]
    (item,) = all_items(alice, stack.url, job["id"])
    assert [(o["method"], o["params"]) for o in item["outputs"]] == [
        ("gradcam", {"layer": "layer3", "render": "cam"}),
        ("guided_gradcam", {"layer": "layer2", "rule": "relu", "render": "signed"})]
    engine = Engine(build_model(parse_model_spec(stack_model.spec), stack_model.weights))
    want = engine.attribute(torch.from_numpy(x)[None], [method_spec("gradcam", layer="layer3"),
                                                        method_spec("guided_gradcam",
                                                                    layer="layer2")])
    for out, amap in zip(item["outputs"], want.images[0].maps, strict=True):
        got = np.load(io.BytesIO(download(alice, stack, out["npy"])))
        assert np.abs(amap.values).max() > 0
        np.testing.assert_allclose(got, amap.values, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(amap.values).max()))


def test_json_job_with_storage_uris_matches_the_engine(stack, stack_model, alice):
    storage = stack.backend.storage()
    inputs = [image_bytes(10 + i) for i in range(3)]
    for i, data in enumerate(inputs):
        storage.put(f"incoming/{i}.png", data)
    body = {"model": stack_model.name, "methods": METHODS,
            "inputs": [{"uri": storage.uri(f"incoming/{i}.png")} for i in range(3)]}
    response = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"])
    assert job["status"] == "succeeded" and job["progress"]["done"] == 3
    items = all_items(alice, stack.url, job["id"])
    check_items(stack, alice, items, stack_model, inputs)


def test_a_bad_item_fails_alone(stack, stack_model, alice):
    storage = stack.backend.storage()
    storage.put("incoming/good.png", image_bytes(20))
    storage.put("incoming/broken.png", image_bytes(21)[:60])
    body = {"model": stack_model.name, "outputs": ["npy"], "inputs": [
        {"uri": storage.uri("incoming/good.png")},
        {"uri": storage.uri("incoming/broken.png")},
        {"uri": storage.uri("incoming/missing.png")},
    ]}
    job_id = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30).json()["id"]
    job = job_final(alice, stack.url, job_id)
    assert job["status"] == "succeeded" and counts(job) == {"total": 3, "done": 1, "failed": 2}
    good, broken, missing = all_items(alice, stack.url, job_id)
    assert good["status"] == "succeeded" and good["outputs"][0]["png"] is None
    assert broken["status"] == "failed" and "cannot be decoded" in broken["error"]
    assert missing["status"] == "failed" and "no such object" in missing["error"]


def test_cancel_stops_the_items_not_yet_run(stack, stack_model, alice):
    storage = stack.backend.storage()
    storage.put("incoming/many.png", image_bytes(30))
    body = {"model": stack_model.name, "inputs": [{"uri": storage.uri("incoming/many.png")}] * 400}
    job_id = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30).json()["id"]
    response = alice.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10)
    # Final only once its finalizer has written the results file and the report.
    assert response.status_code == 200 and response.json()["progress"]["finalizing"]
    assert response.json()["status"] in ("queued", "running", "cancelled")
    first = job_final(alice, stack.url, job_id)
    r = stack.backend.redis()  # every task of the job over: queued, or delivered and running
    wait_until(f"no task of job {job_id} left", lambda: [
        m for m in [*r.lrange("saliency", 0, -1), *r.hvals("unacked")] if job_id in m],
        until=lambda left: not left, timeout=60)
    job = alice.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    assert job["error"] == "cancelled by the client"
    assert job["progress"] == first["progress"]  # nothing more runs
    assert job["progress"]["done"] < 400
    last = alice.get(f"{stack.url}/v1/jobs/{job_id}/items", params={"cursor": "399"},
                     timeout=10).json()["items"]
    assert last[0]["status"] == "cancelled" and last[0]["outputs"] == []


def test_an_item_a_cancelled_job_never_ran_has_one_error_in_items_and_results(stack, stack_model,
                                                                              alice):
    """`/items` and the results file say the same of an item the job's end left unrun."""
    storage = stack.backend.storage()
    storage.put("incoming/unrun.png", image_bytes(31))
    body = {"model": stack_model.name,
            "inputs": [{"uri": storage.uri("incoming/unrun.png")}] * 400}
    job_id = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30).json()["id"]
    assert alice.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10).status_code == 200
    assert job_final(alice, stack.url, job_id)["status"] == "cancelled"
    (item,) = alice.get(f"{stack.url}/v1/jobs/{job_id}/items",
                        params={"cursor": "399", "limit": 1}, timeout=10).json()["items"]
    lines = alice.get(f"{stack.url}/v1/jobs/{job_id}/results", params={"format": "jsonl"},
                      timeout=30).text.splitlines()
    row = next(r for r in map(json.loads, lines) if r["index"] == 399)
    assert (item["status"], row["status"]) == ("cancelled", "cancelled")
    assert item["error"] == row["error"] == "not run: the job ended first"


def test_idempotency_key_returns_the_same_job_and_enqueues_nothing(stack, stack_model, alice):
    r = stack.backend.redis()

    def jobs() -> int:
        return sum(1 for k in r.scan_iter("saliency:job:*") if k.count(":") == 2)

    spec = {"model": stack_model.name}
    headers = {"Idempotency-Key": f"retry-{stack.backend.name}"}
    first = submit(alice, stack.url, spec, [("a.png", image_bytes(40))], headers)
    assert first.status_code == 202
    before = jobs()
    again = submit(alice, stack.url, spec, [("a.png", image_bytes(40))], headers)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert jobs() == before
    assert job_final(alice, stack.url, first.json()["id"])["progress"]["total"] == 1


def test_tenants_see_only_their_own_jobs_and_models(stack, stack_model, alice, bob):
    job_id = submit(alice, stack.url, {"model": stack_model.name},
                    [("a.png", image_bytes(50))]).json()["id"]
    job_final(alice, stack.url, job_id)
    name = alice.get(f"{stack.url}/v1/jobs/{job_id}/items", timeout=10).json()[
        "items"][0]["outputs"][0]["png"].split("?")[0].rsplit("/", 1)[-1]
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/items",
                 f"/v1/jobs/{job_id}/files/0/{name}", f"/v1/models/{stack_model.name}"):
        response = bob.get(stack.url + path, timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert bob.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10).status_code == 404
    assert stack_model.name not in [m["name"] for m in bob.get(f"{stack.url}/v1/models").json()[
        "models"]]
    response = submit(bob, stack.url, {"model": stack_model.name}, [("a.png", image_bytes(51))])
    assert response.status_code == 404 and "model" in response.json()["error"]["message"]
    assert alice.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).status_code == 200


def test_keys_are_required_and_programs_need_the_admin_role(stack, bob):
    response = stack.session(None).get(f"{stack.url}/v1/models", timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    wrong = stack.session("not-a-key").get(f"{stack.url}/v1/models", timeout=10)
    assert wrong.status_code == 401
    spec = '{"name": "prog", "num_classes": 10}'
    response = bob.post(f"{stack.url}/v1/models", files={
        "spec": (None, spec), "program": ("m.pt2", b"PK\x03\x04" + bytes(100))}, timeout=10)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    for public in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert stack.session(None).get(stack.url + public, timeout=10).status_code == 200


def test_probes_metrics_and_models(stack, stack_model, alice):
    assert alice.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    assert alice.get(f"{stack.url}/readyz").json() == {"status": "ready"}
    metrics = alice.get(f"{stack.url}/metrics").text
    assert 'saliency_jobs{status="succeeded"}' in metrics
    assert "saliency_job_latency_seconds_bucket" in metrics and "saliency_queue_depth" in metrics
    model = alice.get(f"{stack.url}/v1/models/{stack_model.name}").json()
    assert model["architecture"] == "resnet18" and model["num_classes"] == 10
    assert model["input_size"] == 32 and model["format"] == "safetensors"
    methods = alice.get(f"{stack.url}/v1/methods").json()["methods"]
    assert [m["name"] for m in methods][:3] == ["gradient", "guided_backprop", "deconvnet"]
    smoothgrad = next(m for m in methods if m["name"] == "smoothgrad")
    assert {p["name"]: p["default"] for p in smoothgrad["params"]}["samples"] == 25


def test_responses_match_the_openapi_schemas(stack, stack_model, alice):
    from jsonschema import Draft202012Validator

    document = alice.get(f"{stack.url}/openapi.json", timeout=10).json()

    def check(name: str, body) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        Draft202012Validator(schema).validate(body)

    response = submit(alice, stack.url, {"model": stack_model.name}, [("a.png", image_bytes(60))])
    check("Accepted", response.json())
    check("Job", job_final(alice, stack.url, response.json()["id"]))
    check("ItemPage", alice.get(f"{stack.url}/v1/jobs/{response.json()['id']}/items").json())
    check("Model", alice.get(f"{stack.url}/v1/models/{stack_model.name}").json())
    check("Error", alice.get(f"{stack.url}/v1/models/nope").json())


def test_signed_output_is_the_map_around_grey(stack, stack_model, alice):
    """`signed` (an extension) is the raw map as RGB: 128 + v / (2 · p99.5(|v|)) · 255."""
    spec = {"model": stack_model.name, "methods": ["guided_backprop"],
            "outputs": ["npy", "signed"]}
    response = submit(alice, stack.url, spec, [("a.png", image_bytes(5, "PNG"))])
    assert response.status_code == 202, response.text
    assert job_final(alice, stack.url, response.json()["id"])["status"] == "succeeded"
    (item,) = all_items(alice, stack.url, response.json()["id"])
    (out,) = item["outputs"]
    assert out["png"] is None and out["overlay"] is None
    values = np.load(io.BytesIO(download(alice, stack, out["npy"])))
    picture = np.asarray(Image.open(io.BytesIO(download(alice, stack, out["signed"]))))
    scale = np.percentile(np.abs(values), 99.5)
    expected = np.rint(np.clip(0.5 + values / (2 * scale), 0, 1) * 255).transpose(1, 2, 0)
    assert picture.shape == (32, 32, 3)
    assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 1


def test_every_rank_of_a_topk_job_is_the_gradient_of_its_own_class(stack, stack_model, alice):
    """Each of the k maps of `{"topk": k}` is its own file, and the gradient of its own class."""
    rng = np.random.default_rng(17)
    arrays = [rng.standard_normal((3, 32, 32)).astype(np.float32) for _ in range(2)]
    spec = {"model": stack_model.name, "methods": ["gradient"], "target": {"topk": 3},
            "outputs": ["npy", "png"]}
    response = submit(alice, stack.url, spec,
                      [(f"{i}.npy", npy_bytes(a)) for i, a in enumerate(arrays)])
    assert response.status_code == 202, response.text
    assert job_final(alice, stack.url, response.json()["id"])["status"] == "succeeded"
    items = all_items(alice, stack.url, response.json()["id"])
    paths = []
    for item, x in zip(items, arrays, strict=True):
        top, grads = own_class_gradients(stack_model.weights, x, 3)
        assert [(o["method"], o["target"]) for o in item["outputs"]] == [
            ("gradient", {"class": c}) for c in top]
        for rank, (out, want) in enumerate(zip(item["outputs"], grads, strict=True)):
            got = np.load(io.BytesIO(download(alice, stack, out["npy"])))
            assert got.shape == want.shape, rank
            error = np.linalg.norm(got - want) / np.linalg.norm(want)
            assert error <= 1e-4, (item["index"], rank, error)
            paths += [url_path(out["npy"]), url_path(out["png"])]
        assert [o["rank"] for o in item["outputs"]] == [0, 1, 2]
    assert len(set(paths)) == len(paths) == 2 * 3 * 2
