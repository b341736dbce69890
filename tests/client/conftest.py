"""Fixtures of the client tests: a dropping proxy, an API with a tiny read rate, image
folders, a mock API (no server)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from saliency_client import cli

from devstack import ROOT, start_api


@dataclass(frozen=True)
class LimitedApi:
    """An API allowing tenant `tenant` (key `key`) one read per second, with webhooks on."""

    url: str
    key: str = "key-carol"
    tenant: str = "carol"
    webhook_master_key: str = "client-tests-webhook-master"


def _read_message(sock: socket.socket) -> bytes:
    """One HTTP request (headers + Content-Length body) from `sock`; b"" on EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _close_after(request: bytes) -> bytes:
    """The request with `Connection: close`, so the upstream answer ends at EOF."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


class DroppingProxy:
    """Forwards each request to `upstream`; the first `drop` requests whose request line
    starts with `drop_prefix` reach the server, but their answers are swallowed and the
    client's connection is closed, as when a network fails after the server got the request.
    """

    def __init__(self, upstream: str, drop_prefix: bytes, drop: int = 1) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.drop_prefix, self.drop = drop_prefix, drop
        self.forwarded: list[bytes] = []  # every request the server received
        self.dropped: list[bytes] = []  # the answers the client never saw
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            request = _read_message(client)
            if not request:
                return
            with socket.create_connection(self.upstream) as up:
                up.sendall(_close_after(request))
                answer = b""
                while chunk := up.recv(65536):
                    answer += chunk
            with self._lock:
                self.forwarded.append(request)
                swallow = request.startswith(self.drop_prefix) and self.drop > 0
                if swallow:
                    self.drop -= 1
                    self.dropped.append(answer)
            if not swallow:
                client.sendall(answer)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def dropping_proxy():
    proxies: list[DroppingProxy] = []

    def make(upstream: str, drop_prefix: bytes, drop: int = 1) -> DroppingProxy:
        proxies.append(DroppingProxy(upstream, drop_prefix, drop))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def _fake_api(pages: int = 3, status: str = "running") -> httpx.MockTransport:
    """A MockTransport API: one job that stays `status`, with `pages` one-item pages."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/j":
            return httpx.Response(200, json={"id": "j", "status": status,
                                             "progress": {"total": pages, "done": 0}})
        cursor = int(request.url.params.get("cursor") or 0)
        item = {"index": cursor, "input": f"{cursor}.png", "status": "pending", "error": None,
                "prediction": None, "outputs": []}
        return httpx.Response(200, json={"items": [item], "next_cursor": str(cursor + 1)
                                         if cursor + 1 < pages else None})

    return httpx.MockTransport(handler)


@pytest.fixture
def fake_api():
    """A factory of MockTransports for an API with one job `j` (no server needed)."""
    return _fake_api


@pytest.fixture(scope="session")
def limited_api(file_backend) -> LimitedApi:
    """A second API on the file backend: one read per second for its one tenant, and
    webhooks on. The buckets of other tenants (and of `api_url`'s) are untouched."""
    spec = LimitedApi("")
    env = {**file_backend.env, "SALIENCY_RATE_READ": "1",
           "SALIENCY_API_KEYS": f"{spec.key}:{spec.tenant}",
           "SALIENCY_WEBHOOK_MASTER_KEY": spec.webhook_master_key}
    api = start_api(env, ROOT / "test-output" / "logs")
    yield LimitedApi(api.url)
    api.stop()


@pytest.fixture
def image_folder():
    """Write an ImageFolder tree: `classes` maps a class folder to its number of seeded
    32×32 PNGs; answers the tree's root."""
    import numpy as np
    from PIL import Image

    def make(root: Path, classes: dict[str, int]) -> Path:
        rng = np.random.default_rng(len(classes))
        for name, count in classes.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
        return root

    return make


@pytest.fixture
def run(api_url, capsys):
    """Run the CLI in-process; answer (exit code, stdout, stderr)."""

    def call(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--url", api_url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call
