"""The SDK against the real stack: submit, wait, page, download, cancel, errors, retries."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from saliency_client import ApiError, Client, JobStatus, RetryPolicy

METHODS = ["gradient", "guided_backprop"]
FAST = RetryPolicy(attempts=5, base=0.05, cap=0.2)


@pytest.fixture
def client(api_url):
    with Client(api_url, retry=FAST) as c:
        yield c


def test_submit_wait_page_and_download(client, tiny_model, images, tmp_path):
    job = client.submit(images(3), model=tiny_model, methods=METHODS)
    assert job.wait(timeout=60, progress=False).status is JobStatus.SUCCEEDED
    assert job.progress.done == 3 and job.progress.failed == 0

    items = list(job.items(page_size=2))  # two pages, joined by next_cursor
    assert [i.index for i in items] == [0, 1, 2]
    assert all(i.prediction is not None and len(i.outputs) == 2 for i in items)

    out = job.download(tmp_path / "out")
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    for item in items:
        target = f"class{item.prediction.class_index}"
        for method in METHODS:
            stem = out / f"{item.index:05d}_{method}_{target}"
            values = np.load(stem.with_suffix(".npy"))
            assert values.dtype == np.float32 and values.ndim == 3 and np.isfinite(values).all()
            for suffix in (".png", "_overlay.png"):
                assert (out / (stem.name + suffix)).read_bytes().startswith(b"\x89PNG")
    first_class = items[0].prediction.class_index
    assert lines[0]["files"][0]["npy"] == f"00000_gradient_class{first_class}.npy"


def test_cancel_stops_the_items_not_yet_run(client, tiny_model, images):
    job = client.submit(images(1) * 200, model=tiny_model, methods=METHODS)
    deadline = time.monotonic() + 60
    while job.refresh().status is JobStatus.QUEUED and time.monotonic() < deadline:
        time.sleep(0.05)  # cancelled once a worker has started it
    state = job.cancel().state  # final once its results file and report are written
    assert state.status is JobStatus.RUNNING and state.progress.finalizing
    job.wait(timeout=30, progress=False)
    assert job.status is JobStatus.CANCELLED
    statuses = {item.status for item in job.items(page_size=100)}
    assert "cancelled" in statuses and job.progress.done < 200


def test_an_api_error_carries_code_message_and_status(client, images):
    with pytest.raises(ApiError) as info:
        client.submit(images(1), model="no-such-model")
    assert info.value.status == 404 and info.value.code == "not_found"
    assert "no-such-model" in info.value.message
    with pytest.raises(ApiError) as info:
        client.job("0" * 32).refresh()
    assert info.value.status == 404


def test_a_submit_retried_after_a_dropped_answer_makes_one_job(
    api_url, tiny_model, images, dropping_proxy
):
    proxy = dropping_proxy(api_url, b"POST /v1/jobs ")
    with Client(proxy.url, retry=FAST) as client:
        job = client.submit(images(1), model=tiny_model)
        job.wait(timeout=60, progress=False)
    posts = [r for r in proxy.forwarded if r.startswith(b"POST /v1/jobs ")]
    assert len(posts) == 2 and len(proxy.dropped) == 1  # the server got both sends
    keys = {line for r in posts for line in r.split(b"\r\n") if line.lower().startswith(
        b"idempotency-key:")}
    assert len(keys) == 1  # the retry carried the same key
    first_id = json.loads(proxy.dropped[0].partition(b"\r\n\r\n")[2])["id"]
    assert job.id == first_id  # the retry got the job the lost answer named: one job
    assert job.status is JobStatus.SUCCEEDED


def test_models_and_methods(client, tiny_model):
    assert tiny_model in [m.name for m in client.models()]
    assert client.model(tiny_model).num_classes
    assert {"gradient", "guided_backprop", "deconvnet"} <= {m.name for m in client.methods()}


def test_register_a_hugging_face_bundle(client, tmp_path):
    from hf_bundles import CLASSES, save, tarred, tiny_model

    bundle = tmp_path / "vit.tar.gz"
    bundle.write_bytes(tarred(save(tiny_model("vit"), tmp_path / "vit")))
    model = client.register_model("bundle-sdk", bundle=bundle, mean=(0.5, 0.5, 0.5))
    assert (model.architecture, model.num_classes, model.class_names) == (
        "transformers", 3, CLASSES)
    assert model.raw["mean"] == [0.5, 0.5, 0.5] and model.raw["input_size"] == 32


def test_keys_tenants_and_presigned_downloads(stack, stack_model, images, tmp_path):
    """With keys on (file and S3 storage): the key reaches the API, never the storage nor a
    signed URL."""
    with Client(stack.url, api_key=stack.api_keys["alice"], retry=FAST) as alice:
        job = alice.submit(images(2), model=stack_model.name, outputs=["npy", "png"])
        job.wait(timeout=60, progress=False, check=True)
        out = job.download(tmp_path / stack.backend.name)
        rows = job.results()
    assert len(list(out.glob("*.npy"))) == len(list(out.glob("*.png"))) == 2
    # On S3 the results file is a redirect to a presigned URL, fetched without the key.
    assert (out / "results.parquet").read_bytes()[:4] == b"PAR1" and len(rows) == 2
    with Client(stack.url, api_key=stack.api_keys["bob"], retry=FAST) as bob:
        with pytest.raises(ApiError) as info:
            bob.job(job.id).refresh()
        assert info.value.status == 404
    with Client(stack.url, retry=FAST) as anonymous:
        with pytest.raises(ApiError) as info:
            anonymous.models()
        assert info.value.status == 401 and "API key" in info.value.message
