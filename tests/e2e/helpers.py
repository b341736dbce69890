"""Helpers of the end-to-end suite: inputs, submitting, polling, downloading, side effects."""

from __future__ import annotations

import io
import json

import numpy as np
import requests
from PIL import Image
from waiting import FINAL, wait_until


def image_bytes(seed: int, fmt: str = "PNG", size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def submit(session, url, spec, files, headers=None):
    """POST a multipart job: `files` is a list of (filename, bytes)."""
    parts = [("spec", (None, json.dumps(spec), "application/json"))]
    parts += [("images", (name, io.BytesIO(data))) for name, data in files]
    return session.post(f"{url}/v1/jobs", files=parts, headers=headers or {}, timeout=60)


def counts(job: dict) -> dict:
    """The item counts of a job's progress (it also says `planning` and `finalizing`)."""
    return {k: job["progress"][k] for k in ("total", "done", "failed")}


def all_items(session, url, job_id, limit=3):
    items, cursor = [], ""
    while True:
        page = session.get(f"{url}/v1/jobs/{job_id}/items",
                           params={"cursor": cursor, "limit": limit}, timeout=10).json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        cursor = page["next_cursor"]


def download(session, stack, artifact_url: str) -> bytes:
    # API routes need the key; presigned S3 URLs carry their own authorization and must not
    # get a second one.
    if artifact_url.startswith(stack.url):
        response = session.get(artifact_url, timeout=30)
    else:
        response = requests.get(artifact_url, timeout=30)
    assert response.status_code == 200, (artifact_url, response.text)
    return response.content


def _settle(r, timeout: float = 60.0) -> None:
    """Wait until no job of the shared stack is queued or running, so that only the request
    under test can change what `side_effects` sees."""

    def in_flight() -> list[str]:
        jobs = [k for k in r.scan_iter("saliency:job:*") if k.count(":") == 2]
        return [k for k in jobs if r.hget(k, "status") not in FINAL] + (
            ["a queued task"] if r.llen("saliency") else [])

    wait_until("no job of the shared stack in flight", in_flight, until=lambda left: not left,
               timeout=timeout, every=0.2)


# Keys that change without any request: counters, rate-limit buckets, liveness heartbeats.
VOLATILE = ("saliency:stats", "saliency:workers", "saliency:reconcilers", "saliency:pong:",
            "saliency:reconcile:")


def _volatile(key: str) -> bool:
    return key.startswith(VOLATILE) or (key.startswith("saliency:tenant:") and ":rate:" in key)


def side_effects(stack) -> tuple:
    """What a request could have left behind: service keys in Redis, queued tasks, objects."""
    r = stack.backend.redis()
    _settle(r)
    keys = frozenset(k for k in r.scan_iter("saliency:*") if not _volatile(k))
    return keys, r.llen("saliency"), frozenset(stack.backend.storage().list())


def own_class_gradients(weights, x: np.ndarray, k: int) -> tuple[list[int], list[np.ndarray]]:
    """The k highest-scoring classes of one input (in the model's input space) and the plain
    autograd gradient of each class's logit: the reference a top-k job's maps must match."""
    import torch
    import torchvision
    from safetensors.torch import load_file

    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    inputs = torch.from_numpy(x)[None].requires_grad_(True)
    logits = model(inputs)[0]
    top = logits.topk(k).indices.tolist()
    grads = [torch.autograd.grad(logits[c], inputs, retain_graph=True)[0][0].numpy()
             for c in top]
    return top, grads


def url_path(url: str) -> str:
    """A file URL without its query (a signature or a presigned token)."""
    return url.split("?", 1)[0]


def dataset_uri(stack, rel: str) -> str:
    """The URI of `rel` in the backend's data-set root (the S3 bucket, or the local folder)."""
    backend = stack.backend
    if backend.dataset_bucket:
        return f"s3://{backend.dataset_bucket}/{rel}"
    return (backend.dataset_dir / rel).as_uri()


def put_in_dataset_root(stack, rel: str, data: bytes) -> str:
    """Write a file into the backend's data-set root; its URI."""
    backend = stack.backend
    if backend.dataset_bucket:
        import boto3

        s3 = boto3.client("s3", endpoint_url=backend.s3_endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.put_object(Bucket=backend.dataset_bucket, Key=rel, Body=data)
    else:
        path = backend.dataset_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dataset_uri(stack, rel)


def norm_error(got: np.ndarray, want: np.ndarray) -> float:
    """‖got − want‖ / ‖want‖: the service's tolerance on maps."""
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
