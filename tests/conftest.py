"""Session fixtures: a real Redis, a real S3 server (moto), real API, worker and beat processes.

- `file_backend` / `s3_backend`: Redis database + storage + one Celery worker process + the
  reconciler's consumer + the scheduler (Celery beat, sending the reconciler every 2 s).
- `stack`: the API with API keys and small limits over HTTP, parametrized over both backends.
- `api_url`: the API as the embedded default runs it (no keys, default limits), file storage.
- `stack_model` / `tiny_model`: a seeded resnet18 (10 classes, 32×32) registered on either;
  `tiny_mobilenet`: a seeded MobileNetV2 (no max-pooling) on `api_url`.
- Data-set roots (`SALIENCY_DATASET_ROOTS`): every backend reads the local folder
  `Backend.dataset_dir` (`file://`); the S3 backend also the bucket `saliency-datasets`.
Logs of every process land in test-output/logs/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from stacks import ADMIN_KEY, API_KEYS, LIMITS, LOGS, MODEL_SPEC, OTHER_KEY, WORKER_ENV, register

from devstack import (
    create_bucket,
    stack_env,
    start_api,
    start_beat,
    start_moto,
    start_reconciler,
    start_redis,
    start_worker,
)
from shared.settings import Settings
from shared.storage.interface import Storage, make_storage


@dataclass
class Backend:
    """Redis database, storage and the worker consuming from them."""

    name: str
    env: dict[str, str]
    redis_url: str
    storage_url: str
    s3_endpoint_url: str | None = None
    dataset_dir: Path | None = None  # a local data-set root
    dataset_bucket: str | None = None  # an S3 data-set root

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def storage(self) -> Storage:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            if name in self.env:
                os.environ.setdefault(name, self.env[name])
        return make_storage(self.settings())

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)


@dataclass
class Stack:
    """An API over HTTP on a backend; `session(key)` is an HTTP session with that API key."""

    url: str
    backend: Backend
    api_keys: dict[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return self.backend.redis_url

    @property
    def storage_url(self) -> str:
        return self.backend.storage_url

    def session(self, key: str | None = ADMIN_KEY) -> requests.Session:
        s = requests.Session()
        if key:
            s.headers["Authorization"] = f"Bearer {key}"
        return s


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    service = start_redis(tmp_path_factory.mktemp("redis"))
    yield service.url.rsplit("/", 1)[0]
    service.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    service = start_moto(LOGS)
    yield service.url
    service.stop()


def _backend(name: str, redis_url: str, storage_url: str, s3: str | None,
             dataset_dir: Path, dataset_bucket: str | None = None) -> Iterator[Backend]:
    roots = [dataset_dir.as_uri()] + ([f"s3://{dataset_bucket}"] if dataset_bucket else [])
    env = stack_env(redis_url, storage_url, s3, **WORKER_ENV,
                    SALIENCY_DATASET_ROOTS=",".join(roots))
    env["SALIENCY_DATA_DIR"] = str(LOGS.parent / f"data-{name}")
    worker = start_worker(env, LOGS, name=f"worker-{name}")
    reconciler = start_reconciler(env, LOGS, name=f"reconciler-{name}")
    beat = start_beat(env, LOGS, name=f"beat-{name}")
    yield Backend(name, env, redis_url, storage_url, s3, dataset_dir, dataset_bucket)
    beat.stop()
    reconciler.stop()
    worker.stop()


@pytest.fixture(scope="session")
def file_backend(redis_server, tmp_path_factory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("storage")
    yield from _backend("file", f"{redis_server}/1", root.as_uri(), None,
                        tmp_path_factory.mktemp("datasets-file"))


@pytest.fixture(scope="session")
def s3_backend(redis_server, s3_server, tmp_path_factory) -> Iterator[Backend]:
    create_bucket(s3_server, "saliency-test")
    create_bucket(s3_server, "saliency-datasets")
    yield from _backend("s3", f"{redis_server}/2", "s3://saliency-test/svc", s3_server,
                        tmp_path_factory.mktemp("datasets-s3"), "saliency-datasets")


@pytest.fixture(scope="session", params=["file", "s3"])
def stack(request) -> Iterator[Stack]:
    """The API with keys (alice: admin, bob) and small limits, on file or S3 storage."""
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    env = {**backend.env, **LIMITS, "SALIENCY_API_KEYS": API_KEYS}
    api = start_api(env, LOGS)
    yield Stack(api.url, backend, {"alice": ADMIN_KEY, "bob": OTHER_KEY})
    api.stop()


@pytest.fixture(scope="session")
def api_url(file_backend) -> Iterator[str]:
    """The API as `make run` starts it: no keys, default limits, file storage."""
    api = start_api(file_backend.env, LOGS)
    yield api.url
    api.stop()


@dataclass(frozen=True)
class TinyModel:
    name: str
    spec: dict
    weights: Path


@pytest.fixture(scope="session")
def tiny_spec() -> dict:
    """The registration spec of the tiny model (resnet18, 10 classes, 32×32)."""
    return dict(MODEL_SPEC)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Seeded random weights of a 10-class resnet18, as safetensors."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    path = tmp_path_factory.mktemp("weights") / "tiny-resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _ensure_model(url: str, weights: Path, session: requests.Session) -> TinyModel:
    response = register(url, MODEL_SPEC, weights, session)
    assert response.status_code in (201, 409), response.text
    return TinyModel(MODEL_SPEC["name"], MODEL_SPEC, weights)


@pytest.fixture(scope="session")
def stack_model(stack, tiny_weights) -> TinyModel:
    """The tiny model registered by tenant alice on `stack`."""
    return _ensure_model(stack.url, tiny_weights, stack.session())


@pytest.fixture(scope="session")
def tiny_model(api_url, tiny_weights) -> str:
    """The tiny model's name, registered on `api_url`."""
    return _ensure_model(api_url, tiny_weights, requests.Session()).name


@pytest.fixture(scope="session")
def tiny_mobilenet(api_url, tmp_path_factory) -> str:
    """A seeded MobileNetV2 (10 classes, 32×32, no max-pooling) registered on `api_url`: its
    DeconvNet maps cannot depend on the input, so each such output carries a warning."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    weights = tmp_path_factory.mktemp("weights") / "tiny-mobilenet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    spec = {**MODEL_SPEC, "name": "tiny-mobilenet", "architecture": "mobilenet_v2"}
    response = register(api_url, spec, weights)
    assert response.status_code in (201, 409), response.text
    return spec["name"]


@pytest.fixture
def images(tmp_path):
    """Write `n` small seeded RGB PNGs and return their paths."""
    import numpy as np
    from PIL import Image

    def make(n: int, size: int = 48) -> list:
        rng = np.random.default_rng(n)
        paths = []
        for i in range(n):
            path = tmp_path / f"img{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        return paths

    return make


@pytest.fixture(scope="session")
def confounder_demo(tmp_path_factory):
    """The planted-confounder demo at 32 px (seed 0) as `python -m demo.confounder make`
    writes it: pictures, manifests, and the model trained once per session on one torch
    thread (about 20-40 s), for the in-process audit and the one through the stack."""
    from demo.confounder.build import build

    return build(tmp_path_factory.mktemp("confounder"), seed=0, size=32)
