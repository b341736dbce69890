"""A stack of the security suite's own — its Redis, file storage, API, worker and scheduler —
run as production runs: API keys for two tenants, a signing key, a webhook master key (the
allow-list names `localhost`, which allows its port 80 only, and the webhook receiver's
`localhost:<port>`), logs in `test-output/logs/security/`. Also: a TCP listener on loopback
that counts every connection made to it (nothing may fetch from it), and a webhook receiver."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests
from waiting import model_ready

from devstack import (
    ROOT,
    stack_env,
    start_api,
    start_beat,
    start_reconciler,
    start_redis,
    start_worker,
)

LOGS = ROOT / "test-output" / "logs" / "security"
SECRETS = {
    "alice_key": "sec-alice-4f1c9e7a2b3d",
    "bob_key": "sec-bob-8e2d7c6b5a49",
    "signing_key": "sec-signing-9a8b7c6d5e4f3a2b1c0d",
    "webhook_master_key": "sec-webhook-master-1a2b3c4d5e6f7a8b",
}
API_ENV = {
    "SALIENCY_API_KEYS": f"{SECRETS['alice_key']}:alice:admin,{SECRETS['bob_key']}:bob",
    "SALIENCY_MAX_IMAGES_PER_JOB": "8",
    "SALIENCY_MAX_REQUEST_BYTES": "2000000",
}
STACK_ENV = {
    "SALIENCY_SIGNING_KEY": SECRETS["signing_key"],
    "SALIENCY_WEBHOOK_MASTER_KEY": SECRETS["webhook_master_key"],
    "SALIENCY_BATCH_SIZE": "4",
    "SALIENCY_CHUNK_SIZE": "4",
    "SALIENCY_DATASET_CHUNK_SIZE": "4",
    "SALIENCY_DEVICE": "cpu",
    "SALIENCY_TASK_TIME_LIMIT_S": "120",
    "SALIENCY_VISIBILITY_TIMEOUT_S": "300",
    "SALIENCY_BUILTIN_MODELS": "0",
    "SALIENCY_LEASE_S": "10",
    "SALIENCY_RECONCILE_EVERY_S": "2",
    "SALIENCY_RETRY_BUDGET_S": "20",
    "SALIENCY_WEBHOOK_RETRY_SCHEDULE": "1,1",
}
MODEL = {"name": "sec-resnet18", "architecture": "resnet18", "num_classes": 10,
         "input_size": 32, "resize": 32}


@dataclass
class SecStack:
    url: str
    env: dict[str, str]
    storage_root: object
    keys: dict[str, str] = field(default_factory=dict)
    redis_url: str = ""

    def session(self, tenant: str | None) -> requests.Session:
        s = requests.Session()
        if tenant:
            s.headers["Authorization"] = f"Bearer {self.keys[tenant]}"
        return s

    def redis(self):
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def storage(self):
        from shared.settings import Settings
        from shared.storage.interface import make_storage

        return make_storage(Settings.from_env(self.env))


@pytest.fixture(scope="session")
def sec(tmp_path_factory, receiver) -> Iterator[SecStack]:
    redis_service = start_redis(tmp_path_factory.mktemp("sec-redis"))
    root = tmp_path_factory.mktemp("sec-storage")
    allowed = f"localhost,localhost:{urlsplit(receiver).port}"
    env = stack_env(redis_service.url, root.as_uri(), None, **STACK_ENV,
                    SALIENCY_WEBHOOK_ALLOWED_HOSTS=allowed)
    env["SALIENCY_DATA_DIR"] = str(tmp_path_factory.mktemp("sec-data"))
    worker = start_worker(env, LOGS, name="worker")
    reconciler = start_reconciler(env, LOGS, name="reconciler")
    beat = start_beat(env, LOGS, name="beat")
    api = start_api({**env, **API_ENV}, LOGS)
    yield SecStack(api.url, {**env, **API_ENV}, root,
                   {"alice": SECRETS["alice_key"], "bob": SECRETS["bob_key"]},
                   redis_service.url)
    api.stop()
    beat.stop()
    reconciler.stop()
    worker.stop()
    redis_service.stop()


@pytest.fixture(scope="session")
def sec_s3(s3_backend) -> Iterator[SecStack]:
    """An API with the suite's keys on the session's S3 backend (its worker and moto)."""
    env = {**s3_backend.env, **API_ENV}
    api = start_api(env, LOGS)
    yield SecStack(api.url, env, None, {"alice": SECRETS["alice_key"], "bob": SECRETS["bob_key"]},
                   s3_backend.redis_url)
    api.stop()


@pytest.fixture(scope="session")
def sec_model(sec, tiny_weights) -> str:
    """The tiny model, registered by alice and ready."""
    return register_ready(sec, tiny_weights)


def register_ready(sec: SecStack, tiny_weights) -> str:
    """Register the tiny model as alice and wait until a worker has made it ready."""
    import io
    import json

    alice = sec.session("alice")
    response = alice.post(f"{sec.url}/v1/models", files={
        "spec": (None, json.dumps(MODEL), "application/json"),
        "weights": ("w.safetensors", io.BytesIO(tiny_weights.read_bytes()))}, timeout=60)
    assert response.status_code in (201, 409), response.text
    assert model_ready(alice, sec.url, MODEL["name"])["status"] == "ready"
    return MODEL["name"]


class Listener:
    """A TCP server on loopback that accepts and counts connections, and answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="session")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records webhook deliveries (headers and body) and answers 204."""

    deliveries: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the handler's own name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.deliveries.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        return


@pytest.fixture(scope="session")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
