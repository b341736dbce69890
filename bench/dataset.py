"""Data-set jobs at scale: throughput against the in-process engine, storage and Redis cost per
item, and memory flat in the job's size.

    .venv/bin/python bench/dataset.py [--sizes 1000 10000] [--planner-lines 1000000]
                                      [--formats prefix webdataset parquet] [--items 10000]
                                      [--json bench/results/dataset.json]

For each size it writes that many seeded 64×64 PNGs in ten class folders under a data-set
root, starts a fresh embedded stack (Redis, the API under gunicorn, one worker, the scheduler;
file storage), registers resnet18 with seeded weights (10 classes, 64 px) and runs one prefix
job (`labels: folder-sorted`, method `gradient`, float16 maps) from POST to `succeeded`. It
reports: images/s end to end against `Engine.attribute` on the same images in the same run
(decoding and preprocessing included on both sides); storage objects and bytes per item;
Redis bytes per item once the job has finished (`MEMORY USAGE` of the job's keys); the peak
RSS (VmHWM) of the API processes and of the worker's pool process. With `--planner-lines`, the
planner alone streams a manifest of that many lines in a subprocess, and its peak RSS is
reported against a manifest of 1,000 lines.

With `--formats prefix webdataset parquet` (and `--sizes` left empty to skip the jobs above),
the same images as each format on a counting S3 server (`bench/dataset_formats.py`): storage
requests per item on the data set and the end-to-end rate against the engine, `--items` each.

With `--audit-items 10000 100000` (and `--sizes` left empty to skip the jobs above), the audit
phase alone (`bench/audit_phase.py`): a job of that many items of one predicted class, its
item chunks committed with synthetic rows and thumbnails of planted strategies, then the
worker's audit planning, SpRAy chunks and finalizer run in a fresh process; the peak RSS of
each stage, the largest size's peak against the smallest's (the bound: 10 % or 20 MB,
whichever is larger), and the clusters against the planted strategies. `--audit-checkout DIR`
runs another checkout's worker code on the same jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import audit_phase, dataset_formats  # noqa: E402
from devstack import (  # noqa: E402
    stack_env,
    start_api,
    start_beat,
    start_reconciler,
    start_redis,
    start_worker,
)

SIZE, CLASSES, BATCH = 64, 10, 16
SPEC = {"name": "bench-resnet18", "architecture": "resnet18", "num_classes": CLASSES,
        "input_size": SIZE, "resize": SIZE}


def write_images(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        path = root / f"class{i % CLASSES:02d}" / f"{i:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_weights(path: Path) -> None:
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=CLASSES)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def engine_rate(paths: list[Path], weights: Path, threads: int) -> float:
    """Images per second of the in-process engine, decoding and preprocessing included."""
    import torch

    from shared.spec.model import parse_model_spec
    from worker.engine.core import Engine
    from worker.models.build import build_model, preprocess_image

    torch.set_num_threads(threads)
    spec = parse_model_spec(SPEC)
    engine = Engine(build_model(spec, weights))
    start = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        xs = [preprocess_image(Image.open(p).convert("RGB"), spec.preprocessing)
              for p in paths[i:i + BATCH]]
        engine.attribute(torch.stack(xs), ["gradient"])
    return len(paths) / (time.perf_counter() - start)


def tree_peak_rss(pid: int) -> int:
    """The sum of VmHWM (peak RSS) of a process and its children, in bytes."""
    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def pool_peak_rss(worker_pid: int) -> int:
    """Peak RSS of the worker's pool process (where tasks run), in bytes."""
    children = psutil.Process(worker_pid).children(recursive=True)
    return max((tree_peak_rss(c.pid) for c in children), default=0)


def redis_bytes(url: str, job_id: str) -> int:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    return sum(client.memory_usage(k) or 0 for k in client.scan_iter(f"saliency:job:{job_id}*"))


def run_job(n: int, tmp: Path, weights: Path, threads: int) -> dict:
    root = tmp / f"data-{n}"
    paths = write_images(root, n)
    data = tmp / f"stack-{n}"
    redis = start_redis(data / "redis")
    env = stack_env(redis.url, (data / "storage").as_uri(), SALIENCY_BUILTIN_MODELS="0",
                    SALIENCY_DEVICE="cpu", SALIENCY_DATA_DIR=str(data),
                    SALIENCY_TORCH_THREADS=str(threads), SALIENCY_BATCH_SIZE=str(BATCH),
                    SALIENCY_DATASET_ROOTS=root.as_uri(), SALIENCY_RATE_READ="100000")
    services = [redis]
    try:
        api = start_api(env, data / "log")
        worker = start_worker(env, data / "log")
        services += [api, worker, start_reconciler(env, data / "log"),
                     start_beat(env, data / "log")]
        http = requests.Session()
        response = http.post(f"{api.url}/v1/models", files={
            "spec": (None, json.dumps(SPEC)), "weights": ("w", weights.read_bytes())}, timeout=60)
        response.raise_for_status()
        while http.get(f"{api.url}/v1/models/{SPEC['name']}").json()["status"] != "ready":
            time.sleep(0.2)
        body = {"model": SPEC["name"], "methods": ["gradient"], "target": "label",
                "dataset": {"prefix": root.as_uri(), "labels": "folder-sorted"}}
        start = time.perf_counter()
        job_id = http.post(f"{api.url}/v1/jobs", json=body, timeout=60).json()["id"]
        while (job := http.get(f"{api.url}/v1/jobs/{job_id}").json())["status"] not in (
                "succeeded", "failed", "cancelled"):
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        assert job["status"] == "succeeded" and job["progress"]["done"] == n, job
        prefix = data / "storage" / "t" / "default" / "jobs" / job_id
        files = [p for p in prefix.rglob("*") if p.is_file()]
        return {
            "items": n, "seconds": elapsed, "images_per_s": n / elapsed,
            "objects_per_item": len(files) / n,
            "bytes_per_item": sum(p.stat().st_size for p in files) / n,
            "redis_bytes_per_item": redis_bytes(redis.url, job_id) / n,
            "api_peak_rss_mb": tree_peak_rss(api.proc.pid) / 2**20,
            "worker_peak_rss_mb": pool_peak_rss(worker.proc.pid) / 2**20,
            "engine_images_per_s": engine_rate(paths[:min(n, 2000)], weights, threads),
        }
    finally:
        for service in reversed(services):
            service.stop()


def planner_peak(lines: int, tmp: Path) -> dict:
    """The planner alone on a manifest of `lines` lines, in a fresh process."""
    root = tmp / f"manifest-{lines}"
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.jsonl"
    with open(manifest, "w") as f:
        for i in range(lines):
            f.write(json.dumps({"uri": f"img/{i:08d}.png", "label": i % CLASSES}) + "\n")
    return run_planner(tmp / f"planner-{lines}", root, {"manifest": manifest.as_uri()})


def run_planner(work: Path, root: Path, dataset: dict) -> dict:
    """`bench/planner.py` on `dataset` (under the data-set root `root`), with its own Redis
    and storage under `work`: the items planned, the seconds, the peak RSS."""
    redis = start_redis(work / "redis")
    try:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("planner.py")), redis.url,
             str(work / "storage"), str(root), str(work / "data"), json.dumps(dataset)],
            check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["seconds"] = time.perf_counter() - start
        return result
    finally:
        redis.stop()


def print_runs(runs: list[dict]) -> None:
    print(f"{'items':>8} {'img/s':>7} {'engine':>7} {'ratio':>6} {'obj/item':>9} "
          f"{'B/item':>8} {'redis B/item':>13} {'API MB':>7} {'worker MB':>10}")
    for r in runs:
        r["ratio"] = r["images_per_s"] / r["engine_images_per_s"]
        print(f"{r['items']:>8} {r['images_per_s']:>7.1f} {r['engine_images_per_s']:>7.1f} "
              f"{r['ratio']:>6.2f} {r['objects_per_item']:>9.4f} {r['bytes_per_item']:>8.0f} "
              f"{r['redis_bytes_per_item']:>13.1f} {r['api_peak_rss_mb']:>7.0f} "
              f"{r['worker_peak_rss_mb']:>10.0f}")


def print_audit(rows: list[dict]) -> None:
    print(f"{'items':>8} {'sampled':>8} {'base MB':>8} {'plan MB':>8} {'cluster MB':>11} "
          f"{'report MB':>10} {'peak MB':>8} {'seconds':>8}  clusters (ARI)")
    for r in rows:
        peaks = {s["stage"]: s["peak_mb"] for s in r["stages"]}
        print(f"{r['items']:>8} {r['sampled']:>8} {r['base_mb']:>8.0f} {peaks['plan']:>8.0f} "
              f"{peaks['cluster']:>11.0f} {peaks['report']:>10.0f} {r['peak_mb']:>8.0f} "
              f"{r['seconds']:>8.0f}  {r['clusters']} ({r['adjusted_rand_index']:.3f})")
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        allowed = max(0.1 * small["peak_mb"], 20.0)
        growth = large["peak_mb"] - small["peak_mb"]
        print(f"audit peak at {large['items']:,} items: {growth:+.0f} MB over {small['items']:,} "
              f"({growth / small['peak_mb']:+.1%}); allowed {allowed:.0f} MB: "
              f"{'within' if abs(growth) <= allowed else 'OUTSIDE'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--planner-lines", type=int, default=0)
    parser.add_argument("--formats", nargs="*", choices=dataset_formats.FORMATS, default=[],
                        help="one job per format on the counting S3 server (--items images)")
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--audit-items", type=int, nargs="*", default=[])
    parser.add_argument("--audit-checkout", type=Path, default=audit_phase.ROOT)
    parser.add_argument("--torch-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights = tmp / "w.safetensors"
        write_weights(weights)
        runs = [run_job(n, tmp, weights, args.torch_threads) for n in args.sizes]
        formats = dataset_formats.run_formats(
            args.formats, args.items, tmp, weights, args.torch_threads, SPEC, write_images,
            engine_rate, CLASSES) if args.formats else []
        planner = [planner_peak(n, tmp) for n in sorted({1000, args.planner_lines} - {0})]
        audit = []
        for n in sorted(args.audit_items):
            audit.append(audit_phase.audit_peak(n, tmp, weights, SPEC, args.audit_checkout))
            print_audit(audit[-1:])
    if runs:
        print_runs(runs)
    if formats:
        dataset_formats.print_formats(formats)
    for p in planner:
        print(f"planner: {p['total']:>9} lines, peak RSS {p['peak_rss_mb']:.0f} MB, "
              f"{p['seconds']:.1f} s")
    if audit:
        print_audit(audit)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "planner": planner, "audit": audit,
                                         "formats": formats,
                                         "torch_threads": args.torch_threads}, indent=2))


if __name__ == "__main__":
    main()
