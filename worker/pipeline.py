"""One job, start to finish: load inputs → engine → render → store, testable without Celery.

The model thread only attributes. Inputs of the next batch are read and preprocessed by a
loader thread while the model runs, and each finished image is rendered and uploaded by a
small pool beside it, so neither storage nor PNG encoding holds the model back. Cancellation
is checked between batches. A bad input fails its item alone; transient errors (storage,
Redis: `OSError`, `redis.ConnectionError`) propagate to the task, which retries — items
already recorded are skipped on the next attempt.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared import images
from shared.errors import InputError
from shared.jobstore import Job, JobStore
from shared.registry import record_spec, register_builtin_models
from shared.settings import Settings
from shared.specs import JobSpec, ModelSpec, job_spec_from_json
from shared.status import ItemStatus, JobStatus
from shared.storage import Storage, make_storage

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What a worker process keeps between tasks: connections, caches, thread pools."""

    settings: Settings
    store: JobStore
    storage: Storage
    cache: Any  # worker.models.ModelCache (imported lazily: torch stays out of the parent)
    artifact_dir: Path
    renderers: ThreadPoolExecutor
    loader: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    @classmethod
    def create(cls, settings: Settings) -> WorkerContext:
        import torch

        from worker.models import ModelCache

        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        artifact_dir = Path(settings.data_dir, "cache", "models").absolute()
        artifact_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings=settings,
            store=JobStore.from_url(settings.redis_url),
            storage=make_storage(settings),
            cache=ModelCache(settings.model_cache_size, device, settings.precision),
            artifact_dir=artifact_dir,
            renderers=ThreadPoolExecutor(settings.render_threads, "render"),
        )


_context: WorkerContext | None = None


def context(settings: Settings) -> WorkerContext:
    """The process's context, created on first use (in the worker child, after the fork)."""
    global _context
    if _context is None:
        _context = WorkerContext.create(settings)
    return _context


def register_builtins(settings: Settings) -> list[str]:
    """Register the built-in models (a worker start-up step, in a process of its own)."""
    from shared.logs import configure_logging
    from worker.builtin import BUILTIN_MODELS

    configure_logging(settings)  # a spawned process starts with logging unconfigured

    return register_builtin_models(JobStore.from_url(settings.redis_url), make_storage(settings),
                                   BUILTIN_MODELS)


def fail_job(ctx: WorkerContext, job_id: str, message: str) -> None:
    ctx.store.transition(job_id, JobStatus.FAILED, (JobStatus.QUEUED, JobStatus.RUNNING), message)


def _engine(ctx: WorkerContext, tenant: str, record: dict[str, Any]):
    """The cached engine for a registered model, fetching its artifact to the local cache."""
    from worker.models import build_model

    spec = record_spec(record)
    path = ctx.artifact_dir / Path(record["artifact"]).name
    if not path.exists():
        try:
            data = ctx.storage.get(record["artifact"])
        except FileNotFoundError:
            raise InputError(f"model {spec.name!r}: its artifact is missing from storage") from None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # processes may share the dir
        tmp.write_bytes(data)
        tmp.replace(path)
    key = f"{tenant}/{spec.name}/{record['sha256']}"
    return ctx.cache.get(key, lambda: build_model(spec, path))


@dataclass(frozen=True)
class Loaded:
    index: int
    source: dict[str, Any]
    x: Any = None  # torch.Tensor C×H×W
    error: str | None = None


def _load_one(ctx: WorkerContext, model: ModelSpec, index: int, source: dict) -> Loaded:
    import torch

    from worker.models import preprocess_image

    what = source["name"]
    try:
        data = ctx.storage.get(source["key"])
    except FileNotFoundError:
        return Loaded(index, source, error=f"{what}: no such object in storage")
    settings, size = ctx.settings, model.preprocessing.input_size
    try:
        fmt = images.check_format(data, settings.accepted_formats, what)
        if fmt == "npy":
            x = torch.from_numpy(images.decode_npy(data, settings.max_image_pixels, what))
            if tuple(x.shape) != (3, size, size):
                raise InputError(f"{what}: shape {tuple(x.shape)} is not the model's input "
                                 f"(3, {size}, {size})")
        else:
            image = images.decode_image(data, settings.max_image_pixels, what)
            x = preprocess_image(image, model.preprocessing)
    except InputError as e:
        return Loaded(index, source, error=e.message)
    return Loaded(index, source, x)


def _load(ctx, model, sources: list[tuple[int, dict]]) -> list[Loaded]:
    return [_load_one(ctx, model, i, s) for i, s in sources]


def _failed_item(message: str, worker: str | None = None) -> dict[str, Any]:
    return {"status": ItemStatus.FAILED.value, "error": message, "prediction": None,
            "outputs": [], "worker": worker}


def _store_item(ctx, job: Job, spec: JobSpec, model: ModelSpec, item: Loaded, result,
                coverage: dict[str, Any], worker: str | None) -> None:
    """Render and upload one image's maps, then record the item (keyed: a redo overwrites)."""
    from shared import render
    from worker.models import display_image

    prefix = f"t/{job.tenant}/jobs/{job.id}/outputs/{item.index}"
    rgb = display_image(item.x, model.preprocessing) if "overlay" in spec.outputs else None
    outputs = []
    for j, amap in enumerate(result.maps):
        base = f"{prefix}/{amap.method}-{j}"
        entry: dict[str, Any] = {"method": amap.method, "target": amap.target,
                                 "npy": None, "png": None, "overlay": None, "signed": None,
                                 "coverage": coverage[amap.method]}
        if "npy" in spec.outputs:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(amap.values, dtype=np.float32))
            entry["npy"] = base + ".npy"
            ctx.storage.put(entry["npy"], buf.getvalue(), "application/octet-stream")
        if "png" in spec.outputs or "overlay" in spec.outputs:
            map2d = render.reduce_channels(amap.values, spec.reduce)
            if "png" in spec.outputs:
                entry["png"] = base + ".png"
                ctx.storage.put(entry["png"], render.heatmap_png(map2d), "image/png")
            if "overlay" in spec.outputs:
                entry["overlay"] = base + ".overlay.png"
                ctx.storage.put(entry["overlay"], render.overlay_png(rgb, map2d), "image/png")
        if "signed" in spec.outputs:
            entry["signed"] = base + ".signed.png"
            ctx.storage.put(entry["signed"], render.signed_rgb_png(amap.values), "image/png")
        outputs.append(entry)
    prediction = {"class": result.predicted_class, "score": result.score,
                  "label": model.class_name(result.predicted_class)}
    record = {"status": ItemStatus.SUCCEEDED.value, "error": None, "prediction": prediction,
              "outputs": outputs, "worker": worker}
    ctx.store.record_item(job.id, item.index, record, ok=True)


def _batches(todo: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(todo), size):
        yield todo[start : start + size]


def _collect(pending: set[Future], keep: int) -> set[Future]:
    """Wait until at most `keep` uploads are in flight; re-raise the first failure."""
    while len(pending) > keep:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            fut.result()
    return pending


def _within_attempts(ctx: WorkerContext, job_id: str, batch: list[int],
                     worker: str | None) -> list[int]:
    """Count an attempt at each item; an item tried too often (it kills workers) fails alone."""
    limit = ctx.settings.max_attempts
    keep = []
    for index, n in zip(batch, ctx.store.bump_attempts(job_id, batch), strict=True):
        if n <= limit:
            keep.append(index)
        else:
            message = f"gave up after {limit} attempts (the worker was lost each time)"
            ctx.store.record_item(job_id, index, _failed_item(message, worker), ok=False)
    return keep


def fail_items(ctx: WorkerContext, job_id: str, start: int, stop: int, message: str,
               worker: str | None = None) -> None:
    """Fail the chunk's items not recorded yet (its runs were lost too often), then finish."""
    for index in ctx.store.unfinished(job_id, list(range(start, stop))):
        ctx.store.record_item(job_id, index, _failed_item(message, worker), ok=False)
    ctx.store.finish_if_complete(job_id)


def run_chunk(ctx: WorkerContext, job_id: str, start: int, stop: int,
              budget_s: float = float("inf"), worker: str | None = None) -> bool:
    """Process the items `start`..`stop` (exclusive) of a job that are not recorded yet.

    Returns False if the time budget ran out first (the caller continues the chunk in a fresh
    task). Whichever chunk records a job's last item finishes the job. `worker` (the Celery
    hostname) is written into each item, so one can see which workers shared a job.
    """
    t_begin = time.perf_counter()
    store = ctx.store
    job = store.get_job(job_id)
    if job is None or job.status.is_final:
        return True
    if job.status == JobStatus.QUEUED and not store.transition(
        job_id, JobStatus.RUNNING, (JobStatus.QUEUED,)
    ) and store.status(job_id) != JobStatus.RUNNING:
        return True  # cancelled meanwhile (else another chunk started the job first)
    spec = job_spec_from_json(job.spec)
    record = store.get_model(job.tenant, spec.model)
    if record is None:
        fail_job(ctx, job_id, f"model {spec.model!r} is no longer registered")
        return True
    model = record_spec(record)
    try:
        engine = _engine(ctx, job.tenant, record)
    except InputError as e:
        fail_job(ctx, job_id, e.message)
        return True

    t_model = time.perf_counter()
    deadline = time.monotonic() + budget_s
    stop = min(stop, job.total)
    todo = store.unfinished(job_id, list(range(start, stop)))
    sources = dict(zip(range(start, stop), store.input_range(job_id, start, stop), strict=True))
    batches = list(_batches(todo, ctx.settings.batch_size))
    pending: set[Future] = set()
    next_load: Future | None = None
    complete = True
    phases = {"model": t_model - t_begin, "load_wait": 0.0, "engine": 0.0, "store_wait": 0.0}
    try:
        for b, batch in enumerate(batches):
            if store.status(job_id) != JobStatus.RUNNING:
                break  # cancelled (or failed): items not yet run stay unrun
            if time.monotonic() > deadline:
                complete = False
                break
            batch = _within_attempts(ctx, job_id, batch, worker)
            loading = next_load or ctx.loader.submit(
                _load, ctx, model, [(i, sources[i]) for i in batch])
            next_load = None
            if b + 1 < len(batches):
                nxt = batches[b + 1]
                next_load = ctx.loader.submit(_load, ctx, model, [(i, sources[i]) for i in nxt])
            wanted = set(batch)
            t = time.perf_counter()
            loaded = [item for item in loading.result() if item.index in wanted]
            phases["load_wait"] += time.perf_counter() - t
            good = []
            for item in loaded:
                if item.error is None:
                    good.append(item)
                else:
                    store.record_item(job_id, item.index, _failed_item(item.error, worker),
                                      ok=False)
            if not good:
                continue
            import torch

            t = time.perf_counter()
            try:
                result = engine.attribute(torch.stack([item.x for item in good]),
                                          [m.name for m in spec.methods], spec.target)
            except InputError as e:
                for item in good:
                    store.record_item(job_id, item.index, _failed_item(e.message, worker),
                                      ok=False)
                continue
            phases["engine"] += time.perf_counter() - t
            coverage = {method: c.to_json() for method, c in result.coverage.items()}
            for item, image_result in zip(good, result.images, strict=True):
                pending.add(ctx.renderers.submit(
                    _store_item, ctx, job, spec, model, item, image_result, coverage, worker))
            t = time.perf_counter()
            pending = _collect(pending, 2 * ctx.settings.batch_size)
            phases["store_wait"] += time.perf_counter() - t
        t = time.perf_counter()
        _collect(pending, 0)
        phases["store_wait"] += time.perf_counter() - t
    finally:
        if next_load is not None:
            next_load.cancel()
    if complete:
        store.finish_if_complete(job_id)  # after this chunk's last write: the last chunk sees all
    phases["total"] = time.perf_counter() - t_begin
    # Where a chunk's time went: `model` (job record + engine from the cache), the model
    # thread waiting for inputs (`load_wait`) and for uploads (`store_wait`), the engine.
    phases_ms = {k: round(v * 1000, 1) for k, v in phases.items()}
    log.info("job %s [%d:%d]: %d items, %s ms", job_id, start, stop, len(todo),
             " ".join(f"{k}={v}" for k, v in phases_ms.items()), extra={"phases_ms": phases_ms})
    return complete


def run_job(ctx: WorkerContext, job_id: str, budget_s: float = float("inf")) -> bool:
    """Process all of a job's remaining items in this process (one chunk covering the job)."""
    job = ctx.store.get_job(job_id)
    return run_chunk(ctx, job_id, 0, job.total if job else 0, budget_s)
