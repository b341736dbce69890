"""The audit phase of a data-set job alone, at a size no 2-core machine could attribute: the
peak memory of the worker code that clusters, and then reports on, one predicted class.

`build_job` makes a real data-set job (a manifest of `n` lines naming one 64 px picture,
planned by the service's planner, the seeded resnet18 registered) whose item chunks are
then committed as the shard sink commits them, with synthetic rows (every item predicted
class 0, metrics drawn at random) and synthetic 32×32 thumbnails of three planted strategies
(blobs at three places; shares 60/30/10 %). `audit_peak` then runs, in a fresh process that
has imported what a worker imports (torch included), the worker's own task bodies: `advance`
(the audit's planning: the thumbnails grouped), every audit chunk through `run_chunk` (SpRAy)
and `advance` again (the finalizer: results file and report). Before each stage the kernel's
high-water mark of the resident set (VmHWM) is reset to the current size (`5` written to
/proc/self/clear_refs); the stage's peak is VmHWM after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ((16, 16), (5, 5), (26, 9))
SHARES = (0.6, 0.3, 0.1)

AUDIT = """
import json, sys
import torch  # noqa: F401  (a worker's pool process holds torch; the finalizer draws with it)
from shared.settings import Settings
from worker import runner
from worker.jobs.context import WorkerContext
import worker.kinds  # noqa: F401

def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise LookupError(field)

def stage(name, work):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_mb("VmRSS")
    work()
    return {"stage": name, "rss_before_mb": round(before, 1),
            "peak_mb": round(status_mb("VmHWM"), 1)}

redis_url, storage_url, root, data_dir, job_id = sys.argv[1:6]
ctx = WorkerContext.create(Settings(redis_url=redis_url, storage_url=storage_url,
                                    dataset_roots=(root,), data_dir=data_dir,
                                    builtin_models=False, device="cpu", torch_threads=1))
base = status_mb("VmRSS")

def cluster():
    for chunk in ctx.chunks.states(job_id):
        if chunk.state in ("ready", "sent"):
            runner.run_chunk(ctx, job_id, chunk.start, "bench")

stages = [stage("plan", lambda: runner.advance(ctx, job_id)), stage("cluster", cluster),
          stage("report", lambda: runner.advance(ctx, job_id))]
print(json.dumps({"status": ctx.jobs.get(job_id).status.value, "base_mb": round(base, 1),
                  "stages": stages}))
"""


def planted_thumbnails(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thumbnails of items `indices` (each seeded by its index) and their planted strategy."""
    yy, xx = np.mgrid[:32, :32]
    maps = np.empty((len(indices), 32, 32), np.float32)
    strategy = np.empty(len(indices), np.int64)
    for k, index in enumerate(indices.tolist()):
        rng = np.random.default_rng(index)
        strategy[k] = rng.choice(len(SHARES), p=SHARES)
        cy, cx = np.array(STRATEGIES[strategy[k]]) + rng.normal(0, 1.0, 2)
        maps[k] = (np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
                   + rng.gamma(1.0, 0.03, (32, 32)))
    return maps, strategy


def _record(index: int, rng: np.random.Generator):
    from shared.results.records import ItemRecord, OutputRecord, Prediction
    from shared.status import ItemStatus

    metrics = {"energy_in_box": float(rng.uniform()), "pointing_hit": bool(rng.uniform() < 0.6),
               "border_energy": float(rng.uniform(0, 0.5)),
               "concentration": float(rng.uniform(0.3, 0.7)), "reasons": {}}
    output = OutputRecord(method="gradient", position=0,
                          target={"kind": "predicted", "class": 0}, metrics=metrics)
    return ItemRecord(index=index, status=ItemStatus.SUCCEEDED, input=f"{index}.png",
                      id=f"item-{index}", prediction=Prediction(0, 0.9, "class0"),
                      outputs=(output,), worker="bench", label=0, label_score=0.9,
                      box=(8, 8, 40, 40),
                      baseline={"energy_in_box": 0.3, "pointing_hit": True})


def _commit_chunks(ctx, job_id: str) -> np.ndarray:
    """Commit every chunk of the planned job as a shard sink would, with synthetic rows and
    thumbnails; each item's planted strategy."""
    import tempfile

    from shared.state.chunks import Segment
    from shared.storage.keys import JobKeys
    from shared.storage.shards import ShardWriter

    job = ctx.jobs.get(job_id)
    keys = JobKeys(job.tenant, job_id)
    truth = np.empty(job.total, np.int64)
    for chunk in ctx.chunks.states(job_id):
        lease = ctx.chunks.acquire(job_id, chunk.start, "bench", 600)
        indices = np.arange(lease.start, lease.stop)
        maps, truth[lease.start:lease.stop] = planted_thumbnails(indices)
        rng = np.random.default_rng(lease.start)
        rows = b"".join(json.dumps(_record(i, rng).to_json()).encode() + b"\n"
                        for i in indices.tolist())
        rows_key = keys.rows(lease.start, lease.token)
        ctx.storage.put(rows_key, rows, "application/x-ndjson")
        writer = ShardWriter("float16")
        for index, thumb in zip(indices.tolist(), maps, strict=True):
            writer.add(0, index, thumb)
        thumbs_key = keys.thumbs(lease.start, lease.token)
        with tempfile.TemporaryFile() as out:
            writer.write(out)
            out.seek(0)
            ctx.storage.put_stream(thumbs_key, out, "application/octet-stream")
        writer.close()
        segment = Segment(lease.start, lease.stop, lease.token, None, rows_key, thumbs_key)
        ctx.chunks.commit(lease, lease.stop, segment=segment, done=len(indices))
    return truth


def build_job(n: int, tmp: Path, redis_url: str, weights: Path, spec: dict) -> tuple[dict, str,
                                                                                   np.ndarray]:
    """A planned data-set job of `n` items whose chunks are all committed; the settings'
    arguments of the measured process, the job's id and each item's planted strategy."""
    import uuid

    from shared.models.registry import register_model
    from shared.settings import Settings
    from shared.spec.job import job_spec_from_json
    from shared.spec.model import parse_model_spec
    from shared.state.jobs import NewJob
    from worker.jobs import runner
    from worker.jobs.context import WorkerContext
    from worker.jobs.models import validate_model

    root = tmp / f"audit-data-{n}"
    root.mkdir(parents=True)
    size = spec["input_size"]
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(root / "picture.png")
    with open(root / "manifest.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"uri": "picture.png", "id": f"item-{i}", "label": 0}) + "\n")
    args = {"redis_url": redis_url, "storage_url": (tmp / f"audit-storage-{n}").as_uri(),
            "root": root.as_uri(), "data_dir": str(tmp / f"audit-var-{n}")}
    ctx = WorkerContext.create(Settings(
        redis_url=redis_url, storage_url=args["storage_url"], dataset_roots=(args["root"],),
        data_dir=args["data_dir"], builtin_models=False, device="cpu"))
    with open(weights, "rb") as f:
        register_model(ctx.models, ctx.storage, "default", parse_model_spec(spec),
                       "safetensors", f)
    validate_model(ctx, "default", spec["name"])
    job_id = uuid.uuid4().hex
    body = {"kind": "attribution", "model": spec["name"], "methods": ["gradient"],
            "dataset": {"manifest": (root / "manifest.jsonl").as_uri()}, "seed": 0}
    pipe = ctx.redis.pipeline(transaction=True)
    ctx.jobs.create(NewJob(job_id, "default", job_spec_from_json(body)), pipe)
    pipe.execute()
    runner.plan(ctx, job_id)
    assert ctx.jobs.get(job_id).total == n, ctx.jobs.get(job_id)
    return args, job_id, _commit_chunks(ctx, job_id)


def _report_figures(args: dict, job_id: str, truth: np.ndarray) -> dict:
    """The class's clustering as the report gives it, against the planted strategies."""
    from sklearn.metrics import adjusted_rand_score

    from shared.settings import Settings
    from shared.storage.interface import make_storage
    from shared.storage.keys import JobKeys

    storage = make_storage(Settings(storage_url=args["storage_url"]))
    report = json.loads(storage.get(JobKeys("default", job_id).report))
    (group,) = report["clusters"]
    found = np.full(len(truth), -1)
    for c, cluster in enumerate(group["clusters"]):
        found[cluster["members"]] = c
    return {"class_size": group["size"], "sampled": group.get("sampled", group["size"]),
            "clusters": [c["size"] for c in group["clusters"]],
            "adjusted_rand_index": round(adjusted_rand_score(truth, found), 4)}


def audit_peak(n: int, tmp: Path, weights: Path, spec: dict, checkout: Path = ROOT) -> dict:
    """The audit phase of an `n`-item one-class job, measured in a fresh process that runs
    the code of `checkout` (another checkout of the service: its figures on the same job)."""
    sys.path.insert(0, str(ROOT))
    from devstack import start_redis

    redis = start_redis(tmp / f"audit-redis-{n}")
    try:
        started = time.perf_counter()
        args, job_id, truth = build_job(n, tmp, redis.url, weights, spec)
        setup_s = time.perf_counter() - started
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", AUDIT, args["redis_url"], args["storage_url"], args["root"],
             args["data_dir"], job_id],
            check=True, capture_output=True, text=True, cwd=checkout,
            env={**os.environ, "PYTHONPATH": str(checkout)})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["status"] == "succeeded", result
        result.update(items=n, setup_s=round(setup_s, 1),
                      seconds=round(time.perf_counter() - started, 1),
                      peak_mb=max(s["peak_mb"] for s in result["stages"]),
                      **_report_figures(args, job_id, truth))
        return result
    finally:
        redis.stop()
