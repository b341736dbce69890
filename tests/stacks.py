"""What the test stacks share: where their logs go, the workers' settings, the tiny model's
spec and how it is registered. A module of its own, so that test modules import it by name
(several conftest.py files would shadow each other)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import requests

from devstack import ROOT

LOGS = ROOT / "test-output" / "logs"
ADMIN_KEY, OTHER_KEY = "key-alice-admin", "key-bob"
API_KEYS = f"{ADMIN_KEY}:alice:admin,{OTHER_KEY}:bob"
LIMITS = {
    "SALIENCY_MAX_IMAGES_PER_JOB": "8",
    "SALIENCY_MAX_IMAGE_PIXELS": "100000",
    "SALIENCY_MAX_REQUEST_BYTES": "2000000",
    "SALIENCY_MAX_URIS_PER_JOB": "500",
}
WORKER_ENV = {
    "SALIENCY_BATCH_SIZE": "4",
    "SALIENCY_CHUNK_SIZE": "4",  # a job of more than 4 items is several tasks
    "SALIENCY_DEVICE": "cpu",
    # One intra-op thread: on a shared 2-core machine two threads wait on each other far
    # longer than one takes alone.
    "SALIENCY_TORCH_THREADS": "1",
    "SALIENCY_TASK_TIME_LIMIT_S": "120",
    "SALIENCY_VISIBILITY_TIMEOUT_S": "300",
    "SALIENCY_BUILTIN_MODELS": "0",
    "SALIENCY_LEASE_S": "10",
    "SALIENCY_RECONCILE_EVERY_S": "2",
    "SALIENCY_RETRY_BUDGET_S": "20",
}
MODEL_SPEC = {"name": "tiny-resnet18", "architecture": "resnet18", "num_classes": 10,
              "input_size": 32, "resize": 32}


def register(url: str, spec: dict, weights: Path, session: requests.Session | None = None):
    session = session or requests.Session()
    return session.post(
        f"{url}/v1/models",
        files={"spec": (None, json.dumps(spec), "application/json"),
               "weights": ("w.safetensors", io.BytesIO(weights.read_bytes()))},
        timeout=60,
    )
