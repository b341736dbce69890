"""A whole stack of real processes for one fault case, and the faults to inflict on it.

Each case gets its own Redis (with an append-only file, as in compose, so that a restart
keeps what was fsynced), S3 server behind a pausable TCP proxy (`devstack.proxy`) or local
storage, API, workers, the reconciler's consumer and the scheduler, on short leases. Workers
(and the reconciler) are supervised as `make run` and the orchestrators do: one that dies is
started again, so a poison input meets a fresh worker each time. Every process logs under
`test-output/logs/faults/<case>/`.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from waiting import job_final, wait_until

from devstack import (
    ROOT,
    Service,
    StartError,
    create_bucket,
    stack_env,
    start_api,
    start_beat,
    start_moto,
    start_reconciler,
    start_redis,
    start_worker,
)
from devstack.proxy import TcpProxy
from faults.tls import Tls

LOGS = ROOT / "test-output" / "logs" / "faults"
LEASE_S = 6
RECONCILE_EVERY_S = 1
# Short leases; chunks of two batches; one torch thread per worker (two share two cores).
FAULT_ENV = {
    "SALIENCY_BATCH_SIZE": "4",
    "SALIENCY_CHUNK_SIZE": "8",
    "SALIENCY_DATASET_CHUNK_SIZE": "8",
    "SALIENCY_DEVICE": "cpu",
    "SALIENCY_TORCH_THREADS": "1",
    "SALIENCY_BUILTIN_MODELS": "0",
    "SALIENCY_TASK_TIME_LIMIT_S": "120",
    "SALIENCY_VISIBILITY_TIMEOUT_S": "600",
    "SALIENCY_LEASE_S": str(LEASE_S),
    "SALIENCY_RECONCILE_EVERY_S": str(RECONCILE_EVERY_S),
    "SALIENCY_RATE_SUBMIT": "1000",
    "SALIENCY_RATE_READ": "100000",
}
WEBHOOK_MASTER_KEY = "fault-suite-master-key"


def webhook_env(port: int, tls: Tls | None = None, tls_port: int | None = None
                ) -> dict[str, str]:
    """Webhooks on a short retry schedule, allowed to reach a receiver on `127.0.0.1:port`
    only and, with `tls`, an HTTPS one on `<tls.host>:tls_port` whose CA is `tls.ca`."""
    hosts = [f"127.0.0.1:{port}"] + ([f"{tls.host}:{tls_port}"] if tls else [])
    return {
        "SALIENCY_WEBHOOK_ALLOWED_HOSTS": ",".join(hosts),
        "SALIENCY_WEBHOOK_MASTER_KEY": WEBHOOK_MASTER_KEY,
        "SALIENCY_WEBHOOK_RETRY_SCHEDULE": "1,2,4,8",
        **({"SALIENCY_WEBHOOK_CA_FILE": str(tls.ca)} if tls else {}),
    }


MODEL_SPEC = {"name": "tiny-resnet18", "architecture": "resnet18", "num_classes": 10,
              "input_size": 32, "resize": 32}


@dataclass
class FaultStack:
    """The processes of one fault case; `url` is the API's."""

    name: str
    root: Path
    env: dict[str, str]
    redis: Service
    api: Service
    beat: Service
    reconciler: Service
    workers: list[Service]
    moto: Service | None = None
    proxy: TcpProxy | None = None
    supervise: bool = True
    restarts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def logs(self) -> Path:
        return LOGS / self.name

    # --- reading state ------------------------------------------------------------------------

    def redis_client(self):
        import redis

        return redis.Redis.from_url(self.redis.url, decode_responses=True,
                                    socket_timeout=5, socket_connect_timeout=2)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=30, **kwargs)

    def job(self, job_id: str, session: requests.Session | None = None) -> dict:
        return (session or requests).get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()

    def wait_final(self, job_id: str, timeout: float = 300,
                   session: requests.Session | None = None) -> dict:
        """The job once final, polled through API restarts."""
        return job_final(session or requests, self.url, job_id, timeout=timeout, every=0.2)

    # --- submitting ---------------------------------------------------------------------------

    def register_model(self, weights: Path) -> str:
        """Register the tiny model and wait until a worker has validated it."""
        response = requests.post(
            f"{self.url}/v1/models",
            files={"spec": (None, json.dumps(MODEL_SPEC), "application/json"),
                   "weights": ("w.safetensors", io.BytesIO(weights.read_bytes()))},
            timeout=60)
        assert response.status_code == 201, response.text
        wait_until("the model validated", lambda: self.get(
            f"/v1/models/{MODEL_SPEC['name']}").json()["status"] == "ready", every=0.2)
        return MODEL_SPEC["name"]

    def submit(self, spec: dict, files: list[tuple[str, bytes]] | None = None) -> str:
        if files is None:
            response = requests.post(f"{self.url}/v1/jobs", json=spec, timeout=60)
        else:
            parts = [("spec", (None, json.dumps(spec), "application/json"))]
            parts += [("images", (name, io.BytesIO(data))) for name, data in files]
            response = requests.post(f"{self.url}/v1/jobs", files=parts, timeout=120)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    # --- faults -------------------------------------------------------------------------------

    def worker_mid_chunk(self, job_id: str) -> tuple[Service, int, int]:
        """A live worker in the middle of a chunk of an upload job (some of the chunk's
        items recorded, not all): the worker, the chunk's start and its stop."""
        r = self.redis_client()
        prefix = f"saliency:job:{job_id}"

        def mid_chunk():
            states = r.hgetall(f"{prefix}:cstate")
            names = r.hgetall(f"{prefix}:cworker")
            stops = r.hgetall(f"{prefix}:cstop")
            recorded = {int(i) for i in r.hkeys(f"{prefix}:items")}
            for start, state in states.items():
                a, b = int(start), int(stops[start])
                if state != "running" or not 0 < len(recorded & set(range(a, b))) < b - a:
                    continue
                for w in self.workers:
                    if names.get(start) == self.worker_name(w) and w.proc.poll() is None:
                        return w, a, b
            return None

        return wait_until(f"a worker in the middle of a chunk of job {job_id}", mid_chunk,
                          every=0.01)

    @staticmethod
    def worker_name(worker: Service) -> str:
        """The name a worker records (as `devstack.start_worker` names it)."""
        return f"{worker.name}-{os.getpid()}@{socket.gethostname()}"

    def signal(self, service: Service, sig: int) -> None:
        """Signal a service's whole process group: a worker's pool child goes with it, as
        when a node is lost or a container frozen."""
        os.killpg(service.proc.pid, sig)
        if sig == signal.SIGKILL:
            service.proc.wait()

    def restart_redis(self, down_s: float = 1.0) -> None:
        """`kill -9` Redis and start it again on its port and append-only file."""
        self.signal(self.redis, signal.SIGKILL)
        time.sleep(down_s)
        self.redis = self.redis.restart()

    def restart_api(self) -> None:
        self.api.stop()
        self.api = self.api.restart()

    # --- supervision --------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for i, worker in enumerate(self.workers):
                    if worker.proc.poll() is None or self._stop.is_set():
                        continue
                    try:
                        self.workers[i] = worker.restart()
                        self.restarts += 1
                    except StartError:
                        continue  # tried again on the next round
                if self.reconciler.proc.poll() is not None and not self._stop.is_set():
                    try:
                        self.reconciler = self.reconciler.restart()
                    except StartError:
                        continue

    def start_supervision(self) -> None:
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for service in [self.api, self.beat, self.reconciler, *self.workers]:
                if service.proc.poll() is None:  # a stopped one must go on to stop
                    os.killpg(service.proc.pid, signal.SIGCONT)
                service.stop(timeout=20)
        if self.moto:
            self.moto.stop()
        if self.proxy:
            self.proxy.close()
        self.redis.stop()


def start_stack(name: str, root: Path, *, workers: int = 2, s3: bool = False,
                extra: dict[str, str] | None = None, supervise: bool = True) -> FaultStack:
    """Start a fresh stack for fault case `name` in the directory `root`."""
    logs = LOGS / name
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    started: list[Service] = []
    proxy = moto = None
    try:
        redis = start_redis(root / "redis", persist=True)
        started.append(redis)
        if s3:
            moto = start_moto(logs)
            started.append(moto)
            create_bucket(moto.url, "faults")
            port = int(moto.url.rsplit(":", 1)[1])
            proxy = TcpProxy(("127.0.0.1", port))
            storage_url, endpoint = "s3://faults/svc", proxy.url
        else:
            storage_url, endpoint = (root / "storage").as_uri(), None
        env = stack_env(f"{redis.url}", storage_url, endpoint, **FAULT_ENV)
        env["SALIENCY_DATA_DIR"] = str(root / "data")
        env.update(extra or {})
        api = start_api(env, logs)
        started.append(api)
        reconciler = start_reconciler(env, logs)
        started.append(reconciler)
        beat = start_beat(env, logs)
        started.append(beat)
        pool = []
        for i in range(workers):
            pool.append(start_worker(env, logs, name=f"worker{i}"))
            started.append(pool[-1])
    except BaseException:
        for service in reversed(started):
            service.stop()
        if proxy:
            proxy.close()
        raise
    stack = FaultStack(name, root, env, redis, api, beat, reconciler, pool, moto, proxy,
                       supervise)
    if supervise:
        stack.start_supervision()
    return stack
