"""What the test stacks share: where their logs go, the workers' settings, the tiny model's
spec and how it is registered, and `make run`'s stack as a process. A module of its own, so
that test modules import it by name (several conftest.py files would shadow each other)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests
from waiting import wait_until

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


READY = re.compile(r"saliency: API on (\S+)\s+\(Redis (\S+?)/\d+,")


class Devstack:
    """One `python -m devstack` process (what `make run` runs) in `data_dir`, its API on
    `port`, its output in `<data dir>/devstack.out`. The test's own SALIENCY_ variables, Redis
    and storage are left out; `settings` are its SALIENCY_ variables."""

    def __init__(self, data_dir: Path, port: int, **settings: str) -> None:
        self.data_dir, self.port = data_dir, port
        self.out = data_dir / "devstack.out"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SALIENCY_") and k not in ("REDIS_URL", "STORAGE_URL")}
        env.update(SALIENCY_DATA_DIR=str(data_dir), SALIENCY_PORT=str(port),
                   PYTHONUNBUFFERED="1", **settings)
        data_dir.mkdir(parents=True, exist_ok=True)
        start = self.out.stat().st_size if self.out.exists() else 0
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

        def ready() -> re.Match | None:
            assert self.proc.poll() is None, self.out.read_text(errors="replace")[-3000:]
            return READY.search(self.out.read_bytes()[start:].decode(errors="replace"))

        try:
            match = wait_until(f"devstack ready ({self.out})", ready, timeout=180, every=0.2)
        except AssertionError:
            self.stop()
            raise
        self.url, self.redis = match.group(1), match.group(2)

    @property
    def redis_port(self) -> int:
        return int(self.redis.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)
