"""Helpers of the bad-input suite: crafted files, the error shape, the tally of cases by family,
the worker's processes, and the in-process reference maps."""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import psutil
import requests
from e2e.helpers import side_effects, submit
from PIL import Image
from waiting import job_final

# Cases run, by family; printed at the end of the session (see conftest.py).
TALLY: Counter[str] = Counter()


def tally(family: str, n: int = 1) -> None:
    TALLY[family] += n


@dataclass
class BadStack:
    """The suite's API (keys and limits of its own) on a backend of the session."""

    url: str
    backend: object
    keys: dict[str, str] = field(default_factory=dict)

    def session(self, tenant: str | None = "mallory") -> requests.Session:
        s = requests.Session()
        if tenant:
            s.headers["Authorization"] = f"Bearer {self.keys[tenant]}"
        return s


def assert_error(response: requests.Response, status: int, code: str | None = None,
                 mentioned: str | None = None) -> dict:
    """`status` in the one error shape (`code` and `mentioned` in the message if given)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str), error
    if code is not None:
        assert error["code"] == code, error
    if mentioned is not None:
        assert mentioned in error["message"], error
    return error


# --- crafted files ---------------------------------------------------------------------------

def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int, idat: bytes, bit_depth: int = 8, color_type: int = 2,
        extra: tuple[bytes, ...] = ()) -> bytes:
    """A PNG of the given header whose IDAT holds `idat` (already compressed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (PNG_MAGIC + chunk(b"IHDR", ihdr) + b"".join(extra) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


@functools.cache
def zero_png(width: int, height: int, channels: int = 3) -> bytes:
    """A real PNG of black pixels (8-bit grey or RGB): every row is a filter byte 0 and zeros,
    so the whole stream is zeros, compressed in blocks (a 25,000,000×1 image is 75 MB of
    pixels in a few hundred kilobytes)."""
    color_type = {1: 0, 3: 2}[channels]
    left = height * (1 + width * channels)
    z = zlib.compressobj(1)
    block = bytes(1 << 22)
    parts = []
    while left > 0:
        parts.append(z.compress(block[:left]))
        left -= len(block)
    parts.append(z.flush())
    return png(width, height, b"".join(parts), color_type=color_type)


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def rgb_pixels(seed: int, width: int = 40, height: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def npy(array: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **options)
    return buf.getvalue()


# --- the worker's processes ------------------------------------------------------------------

def worker_processes(backend_name: str) -> tuple[int, frozenset[int]]:
    """The session's worker on `backend_name`: its main process and its pool children."""
    marker = f"worker-{backend_name}-{os.getpid()}@"
    mains = [p for p in psutil.process_iter(["cmdline"])
             if any(marker in part for part in p.info["cmdline"] or ())]
    mains = [p for p in mains if p.parent() is None or p.parent().pid not in
             {m.pid for m in mains}]
    assert len(mains) == 1, f"expected one worker process named {marker}, found {mains}"
    return mains[0].pid, frozenset(c.pid for c in mains[0].children())


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


# --- jobs ------------------------------------------------------------------------------------

def run_job(session: requests.Session, url: str, spec: dict, files, timeout: float = 120):
    """Submit a multipart job, wait for it, and return it with its items."""
    response = submit(session, url, spec, files)
    assert response.status_code == 202, response.text
    job = job_final(session, url, response.json()["id"], timeout=timeout)
    return job, items_of(session, url, job["id"])


def items_of(session: requests.Session, url: str, job_id: str) -> list[dict]:
    page = session.get(f"{url}/v1/jobs/{job_id}/items", params={"limit": 1000}, timeout=30)
    assert page.status_code == 200, page.text
    return page.json()["items"]


def download(session: requests.Session, url: str, artifact: str) -> bytes:
    response = (session if artifact.startswith(url) else requests).get(artifact, timeout=30)
    assert response.status_code == 200, (artifact, response.text[:300])
    return response.content


def register_model(session: requests.Session, url: str, spec, weights: bytes,
                   part: str = "weights") -> requests.Response:
    """POST /v1/models with a spec and one artifact part (`weights` or `program`)."""
    return session.post(f"{url}/v1/models", files={"spec": spec_part(spec),
                                                   part: ("artifact", io.BytesIO(weights))},
                        timeout=60)


def spec_part(spec) -> tuple:
    return (None, spec if isinstance(spec, (str, bytes)) else json.dumps(spec),
            "application/json")


class Reference:
    """The in-process engine on the suite's model: maps of inputs decoded by the test itself."""

    def __init__(self, model_spec: dict, weights) -> None:
        from shared.spec.model import parse_model_spec
        from worker.engine.core import Engine
        from worker.models.build import build_model

        self.spec = parse_model_spec(model_spec)
        self.engine = Engine(build_model(self.spec, weights))

    def tensor(self, x: np.ndarray):
        """An H×W×3 uint8 picture, resized and cropped as the model's preprocessing says;
        a C×H×W float32 array as it is."""
        import torch

        from worker.models.build import preprocess_image

        if x.dtype == np.float32:
            return torch.from_numpy(np.ascontiguousarray(x))
        return preprocess_image(Image.fromarray(x, "RGB"), self.spec.preprocessing)

    def maps(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        result = self.engine.attribute(torch.stack([self.tensor(x) for x in inputs]),
                                       ["gradient"])
        return [image.maps[0].values for image in result.images]


def assert_map(session, url: str, item: dict, expected: np.ndarray, tol: float = 1e-4) -> None:
    """An item succeeded with the expected gradient map (norm-relative error at most `tol`)."""
    assert item["status"] == "succeeded" and item["error"] is None, item
    (output,) = item["outputs"]
    got = np.load(io.BytesIO(download(session, url, output["npy"])))
    assert got.shape == expected.shape, (got.shape, expected.shape)
    error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert error <= tol, f"{item['input']}: relative error {error:.2e}"


def post_file(session: requests.Session, url: str, route: str, model: str, filename: str,
              data: bytes) -> requests.Response:
    """One file as a job's image (`jobs`) or as a data-set upload (`uploads`)."""
    if route == "jobs":
        return submit(session, url, {"model": model}, [(filename, data)])
    return session.post(f"{url}/v1/uploads", data={"prefix": "badinput"},
                        files=[("files", (filename, io.BytesIO(data)))], timeout=60)


def check_refused(stack, session, model: str, case, route: str, family: str) -> None:
    """The case's documented error, naming the file, and nothing left behind."""
    data = case.data()
    before = side_effects(stack)
    response = post_file(session, stack.url, route, model, case.filename, data)
    assert_error(response, case.status, case.code,
                 mentioned="images[0]" if route == "jobs" else "files[0]")
    assert side_effects(stack) == before
    tally(family)


def check_worker(stack, worker: tuple[int, frozenset[int]]) -> None:
    """The worker's main process and pool children are those the suite started with."""
    main, children = worker
    assert psutil.pid_exists(main), "the worker's main process is gone"
    now = worker_processes(stack.backend.name)
    assert now == worker, f"the worker's processes changed: {worker} -> {now}"


def check_real_job(stack, session, model: str, reference, worker, cases=(),
                   tol: float = 1e-4) -> None:
    """After a family: the worker lives, and a real job — a clean image plus the family's
    accepted cases — succeeds with the maps of the pictures the test decoded itself."""
    from badinput.cases import PIXELS, clean_png

    check_worker(stack, worker)
    files = [("clean.png", clean_png())] + [(c.filename, c.data()) for c in cases]
    expected = [PIXELS] + [c.expected() for c in cases]
    job, items = run_job(session, stack.url, {"model": model, "outputs": ["npy"]}, files)
    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] == len(files) and job["progress"]["failed"] == 0, job
    for item, want in zip(items, reference.maps(expected), strict=True):
        assert_map(session, stack.url, item, want, tol)
    check_worker(stack, worker)


def quoted(value: str) -> str:
    """A quoted-string of a multipart header (backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def multipart(parts: list[tuple[str | None, str | None, bytes]], boundary: str = "b0undary"
              ) -> tuple[bytes, str]:
    """A multipart/form-data body written byte for byte: (part name, file name, content)
    each, a name or file name of None left out; returns the body and its content type."""
    body = b""
    for name, filename, content in parts:
        disposition = "form-data" + (f"; name={quoted(name)}" if name is not None else "")
        if filename is not None:
            disposition += f"; filename={quoted(filename)}"
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n"
                 .encode() + content + b"\r\n")
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_multipart(session: requests.Session, url: str, parts, **kw) -> requests.Response:
    body, content_type = multipart(parts, **kw)
    return session.post(url, data=body, headers={"Content-Type": content_type}, timeout=60)


@dataclass
class RawAnswer:
    """An HTTP answer read off a raw socket, with what `assert_error` reads."""

    status_code: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def raw_request(url: str, data: bytes, timeout: float = 30, half_close: bool = False
                ) -> RawAnswer:
    """Send `data` as is to the API's socket (`half_close`: then say no more will come) and
    read the answer until the server closes or the announced body has arrived."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything
        received = b""
        while True:
            try:
                block = sock.recv(65536)
            except ConnectionResetError:
                break
            if not block:
                break
            received += block
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                length = [line.split(b":", 1)[1] for line in head.split(b"\r\n")[1:]
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= int(length[0]):
                    break
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    length = [line.split(":", 1)[1] for line in lines if line.lower().startswith("content-length:")]
    if length:
        body = body[:int(length[0])]  # the first answer only
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().title()] = value.strip()
    return RawAnswer(status, headers, body)
