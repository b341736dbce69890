"""Data sets as job inputs on the real stack (local and S3 storage): manifests and prefixes,
labels, boxes and bad lines, maps cut from shards against the in-process engine, the results
file row by row, places outside the roots refused, and expiry."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
from PIL import Image
from waiting import job_final, wait_until

from e2e.helpers import (
    all_items,
    counts,
    download,
    image_bytes,
    norm_error,
    npy_bytes,
    own_class_gradients,
    side_effects,
    url_path,
)
from e2e.helpers import dataset_uri as _uri
from e2e.helpers import put_in_dataset_root as _put

CLASSES = ("cat", "dog")


def _reference(model, images: list[bytes], targets: list[int | None]):
    import torch

    from shared.spec.model import parse_model_spec
    from shared.spec.targets import PREDICTED, ClassTarget
    from worker.engine.core import Engine
    from worker.models.build import build_model, preprocess_image

    spec = parse_model_spec(model.spec)
    xs = [preprocess_image(Image.open(io.BytesIO(d)).convert("RGB"), spec.preprocessing)
          for d in images]
    per_image = [PREDICTED if t is None else ClassTarget(t) for t in targets]
    return Engine(build_model(spec, model.weights)).attribute(torch.stack(xs), ["gradient"],
                                                               per_image)


@pytest.mark.parametrize("dtype,tolerance", [("float16", 1e-3), ("float32", 1e-6)])
def test_a_manifest_job_with_labels_boxes_and_a_bad_line(stack, stack_model, alice, dtype,
                                                         tolerance):
    run = f"manifest-{dtype}-{time.monotonic_ns()}"
    images = [image_bytes(700 + i, size=40) for i in range(3)]
    lines = []
    for i, data in enumerate(images):
        _put(stack, f"{run}/img/{i}.png", data)
        lines.append(json.dumps({"uri": f"img/{i}.png", "id": f"item-{i}", "label": i + 1,
                                 "box": [2, 2, 30, 30]}))
    lines.insert(1, "{this line is broken")
    manifest = _put(stack, f"{run}/manifest.jsonl", ("\n".join(lines) + "\n\n").encode())
    body = {"model": stack_model.name, "dataset": {"manifest": manifest}, "target": "label",
            "map_dtype": dtype}
    response = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    assert counts(job) == {"total": 4, "done": 3, "failed": 1}
    assert job["dataset"] == {"manifest": manifest}

    items = all_items(alice, stack.url, job["id"])
    assert [i["status"] for i in items] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert items[1]["error"].startswith("manifest line 2:")
    good = [items[0], items[2], items[3]]
    assert [i["id"] for i in good] == ["item-0", "item-1", "item-2"]
    assert [i["label"] for i in good] == [1, 2, 3]
    expected = _reference(stack_model, images, [1, 2, 3])
    for item, want in zip(good, expected.images, strict=True):
        (out,) = item["outputs"]
        assert out["target"] == {"class": item["label"]}
        assert item["label_score"] == pytest.approx(float(want.probs[item["label"]]), rel=1e-4)
        got = np.load(io.BytesIO(download(alice, stack, out["npy"])))
        assert got.dtype == np.float32 and got.shape == want.maps[0].values.shape
        assert norm_error(got, want.maps[0].values) <= tolerance
        for kind in ("png", "overlay"):
            assert Image.open(io.BytesIO(download(alice, stack, out[kind]))).size == (32, 32)

    raw = alice.get(f"{stack.url}/v1/jobs/{job['id']}/results", timeout=30)
    assert raw.status_code == 200
    rows = pq.read_table(io.BytesIO(raw.content)).to_pylist()
    assert [(r["index"], r["method"], r["status"]) for r in rows] == [
        (0, "gradient", "succeeded"), (1, None, "failed"), (2, "gradient", "succeeded"),
        (3, "gradient", "succeeded")]
    for row, item in zip([rows[0], rows[2], rows[3]], good, strict=True):
        assert (row["id"], row["label"], row["predicted"]) == (
            item["id"], item["label"], item["prediction"]["class"])
        assert row["correct"] == (item["label"] == item["prediction"]["class"])
        assert row["shard"] and row["row"] is not None and row["npy"] is None
    assert rows[1]["error"] == items[1]["error"]
    jsonl = alice.get(f"{stack.url}/v1/jobs/{job['id']}/results", params={"format": "jsonl"},
                      timeout=30).text.splitlines()
    assert [json.loads(line)["index"] for line in jsonl] == [0, 1, 2, 3]
    csv = alice.get(f"{stack.url}/v1/jobs/{job['id']}/results", params={"format": "csv"},
                    timeout=30).text.splitlines()
    assert csv[0].startswith('"index","id","uri"') and len(csv) == 5


def test_a_prefix_job_with_folder_labels(stack, stack_model, alice):
    run = f"folders-{time.monotonic_ns()}"
    for c, name in enumerate(CLASSES):
        for i in range(3):
            _put(stack, f"{run}/train/{name}/{i}.png", image_bytes(800 + 10 * c + i))
    _put(stack, f"{run}/train/notes.txt", b"not an image")
    prefix = _uri(stack, f"{run}/train")
    for labels, extra, expected in (
        ("folder-sorted", {}, [0, 0, 0, 1, 1, 1]),
        ("folder", {"label_map": {"cat": 7, "dog": 4}}, [7, 7, 7, 4, 4, 4]),
    ):
        body = {"model": stack_model.name, "target": "label",
                "dataset": {"prefix": prefix, "labels": labels, **extra}}
        response = alice.post(f"{stack.url}/v1/jobs", json=body, timeout=30)
        assert response.status_code == 202, response.text
        job = job_final(alice, stack.url, response.json()["id"], timeout=120)
        assert job["status"] == "succeeded", job
        assert counts(job) == {"total": 6, "done": 6, "failed": 0}
        assert job["progress"]["skipped"] == 1
        items = all_items(alice, stack.url, job["id"])
        assert [i["label"] for i in items] == expected, labels
        assert all(i["outputs"][0]["target"] == {"class": i["label"]} for i in items)
        assert items[0]["input"].endswith(f"/{CLASSES[0]}/0.png")


def test_items_keep_the_v1_shape(stack, stack_model, alice):
    from jsonschema import Draft202012Validator

    run = f"shape-{time.monotonic_ns()}"
    uri = _put(stack, f"{run}/a.png", image_bytes(900))
    manifest = _put(stack, f"{run}/m.jsonl", json.dumps({"uri": uri}).encode())
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": stack_model.name, "dataset": {"manifest": manifest}}, timeout=30)
    job = job_final(alice, stack.url, response.json()["id"], timeout=120)
    document = alice.get(f"{stack.url}/openapi.json", timeout=10).json()
    page = alice.get(f"{stack.url}/v1/jobs/{job['id']}/items", timeout=10).json()
    for name, body in (("ItemPage", page), ("Job", job)):
        Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                              "components": document["components"]}).validate(body)
    report = alice.get(f"{stack.url}/v1/jobs/{job['id']}/report", timeout=10).json()
    assert report["kind"] == "attribution"


def test_every_rank_of_a_topk_data_set_job_is_the_gradient_of_its_own_class(stack, stack_model,
                                                                           alice):
    """Maps cut from shards and result rows are keyed by rank: each is its own class's map."""
    from safetensors.numpy import load

    run = f"topk-{time.monotonic_ns()}"
    rng = np.random.default_rng(23)
    arrays = [rng.standard_normal((3, 32, 32)).astype(np.float32) for _ in range(2)]
    lines = [json.dumps({"uri": _put(stack, f"{run}/{i}.npy", npy_bytes(a))})
             for i, a in enumerate(arrays)]
    manifest = _put(stack, f"{run}/m.jsonl", "\n".join(lines).encode())
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": stack_model.name, "dataset": {"manifest": manifest}, "methods": ["gradient"],
        "target": {"topk": 3}, "outputs": ["npy", "png"]}, timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job

    def close(got: np.ndarray, want: np.ndarray) -> bool:  # float16 shards: 1e-3 of the max
        return float(np.abs(got - want).max()) <= 1e-3 * float(np.abs(want).max())

    references = [own_class_gradients(stack_model.weights, x, 3) for x in arrays]
    paths = []
    for item, (top, grads) in zip(all_items(alice, stack.url, job["id"]), references,
                                  strict=True):
        assert [o["target"] for o in item["outputs"]] == [{"class": c} for c in top]
        for rank, (out, want) in enumerate(zip(item["outputs"], grads, strict=True)):
            got = np.load(io.BytesIO(download(alice, stack, out["npy"])))
            assert close(got, want), (item["index"], rank)
            paths += [url_path(out["npy"]), url_path(out["png"])]
        assert [o["rank"] for o in item["outputs"]] == [0, 1, 2]
    assert len(set(paths)) == len(paths) == 2 * 3 * 2

    raw = alice.get(f"{stack.url}/v1/jobs/{job['id']}/results", timeout=30)
    rows = pq.read_table(io.BytesIO(raw.content)).to_pylist()
    assert [(r["index"], r["method"], r["position"], r["rank"], json.loads(r["target"]))
            for r in rows] == [(i, "gradient", 0, rank, {"class": c})
                               for i, (top, _) in enumerate(references)
                               for rank, c in enumerate(top)]
    storage = stack.backend.storage()
    for row in rows:
        shard = load(storage.get(row["shard"]))
        assert int(shard["index.0"][row["row"]]) == row["index"]
        assert int(shard["rank.0"][row["row"]]) == row["rank"]
        got = shard["maps.0"][row["row"]].astype(np.float32) * shard["scale.0"][row["row"]]
        assert close(got, references[row["index"]][1][row["rank"]]), (row["index"], row["rank"])
    jsonl = alice.get(f"{stack.url}/v1/jobs/{job['id']}/results", params={"format": "jsonl"},
                      timeout=30).text.splitlines()
    assert [json.loads(line)["rank"] for line in jsonl] == [0, 1, 2, 0, 1, 2]
    report = alice.get(f"{stack.url}/v1/jobs/{job['id']}/report", timeout=10).json()
    assert report["counts"]["items"] == 2 and report["counts"]["outputs"] == 2


@pytest.mark.parametrize("where", ["http://example.com/m.jsonl", "file:///etc/passwd",
                                   "s3://another-bucket/m.jsonl",
                                   "file:///tmp/../etc/m.jsonl"])
def test_a_data_set_outside_the_roots_is_refused_and_nothing_is_stored(stack, stack_model,
                                                                       alice, where):
    before = side_effects(stack)
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": stack_model.name, "dataset": {"manifest": where}}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_spec" and error["message"].startswith("dataset.manifest")
    assert side_effects(stack) == before


def test_an_expired_job_answers_410_on_every_route(stack, stack_model, alice):
    """Its signed map URLs too, which need no key: their signature names the job."""
    run = f"expiry-{time.monotonic_ns()}"
    manifest = _put(stack, f"{run}/m.jsonl",
                    json.dumps({"uri": _put(stack, f"{run}/a.png", image_bytes(950))}).encode())
    response = alice.post(f"{stack.url}/v1/jobs", json={
        "model": stack_model.name, "dataset": {"manifest": manifest}, "retention_s": 5,
        "outputs": ["npy", "png"]}, timeout=30)
    job_id = response.json()["id"]
    assert job_final(alice, stack.url, job_id, timeout=120)["status"] == "succeeded"
    (item,) = all_items(alice, stack.url, job_id)
    signed = [output[kind] for output in item["outputs"] for kind in ("npy", "png")]
    assert all(url.startswith(f"{stack.url}/v1/jobs/{job_id}/maps/") and "&sig=" in url
               for url in signed), signed
    assert [requests.get(url, timeout=10).status_code for url in signed] == [200, 200]
    wait_until(f"job {job_id} expired", lambda: alice.get(
        f"{stack.url}/v1/jobs/{job_id}", timeout=10).status_code, until=lambda code: code == 410,
        timeout=60, every=0.5)
    for path in ("", "/items", "/report", "/results", "/export", "/files/0/x.npy",
                 "/maps/0/0.npy"):
        response = alice.get(f"{stack.url}/v1/jobs/{job_id}{path}", timeout=10)
        assert response.status_code == 410, path
        assert response.json()["error"]["code"] == "expired"
    for url in signed:
        response = requests.get(url, timeout=10)
        assert response.status_code == 410, (url, response.text)
        assert response.json()["error"]["code"] == "expired"
    prefix = f"t/alice/jobs/{job_id}/"
    assert not [k for k in stack.backend.storage().list(prefix)]
