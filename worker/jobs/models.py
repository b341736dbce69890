"""Models on a worker: fetching artifacts, validating registrations, and their cached engines.

`validate_model` is what makes a registration `ready` or `invalid`: the weights' shapes are
compared with the architecture without building it, the model is built and run once on a
blank input, and every module's output shape and layout, whether a max-pooling precedes it
(`worker.engine.max_pooling`), and the default Grad-CAM layer are recorded (`shared.spec.layers`;
the API checks layer targets against them and picks a `top_activations` job's default
projection from them). Built-in models get their artifact produced and uploaded first.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from shared.errors import InputError, InvalidModelError
from shared.state.modelstore import BUILTIN_TENANT, ModelRecord, ModelStatus
from shared.storage.keys import model_artifact
from worker.jobs.context import WorkerContext

log = logging.getLogger(__name__)


def fetch_artifact(ctx: WorkerContext, record: ModelRecord) -> Path:
    """The model's artifact in the local cache, fetched from storage on first use."""
    path = ctx.artifact_dir / Path(record.artifact).name
    if not path.exists():
        try:
            data = ctx.storage.get(record.artifact)
        except FileNotFoundError:
            raise InvalidModelError(
                f"model {record.name!r}: its artifact is missing from storage") from None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # processes may share the dir
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def engine_for(ctx: WorkerContext, tenant: str, record: ModelRecord):
    """The cached engine of a registered model (`worker.engine.core.Engine`)."""
    from worker.models.build import build_model

    if record.status != ModelStatus.READY:
        reason = f": {record.error}" if record.error else ""
        raise InvalidModelError(f"model {record.name!r} is {record.status.value}{reason}")
    path = fetch_artifact(ctx, record)
    key = f"{tenant}/{record.name}/{record.sha256}"
    try:
        return ctx.cache.get(key, lambda: build_model(
            record.spec, path, max_bytes=ctx.settings.max_model_bytes), record.spec.preprocessing)
    except InputError as e:
        raise InvalidModelError(e.message) from None


def job_model(ctx: WorkerContext, job):
    """The record of the model a job was accepted for, and its engine; a model deleted or
    registered again since fails the job (`InputError`), it never runs on another."""
    record = ctx.models.for_job(job)
    return record, engine_for(ctx, job.tenant, record)


def _builtin_artifact(ctx: WorkerContext, record: ModelRecord) -> ModelRecord:
    """Produce a built-in model's artifact, upload it, and fill in the record."""
    from dataclasses import replace

    from worker.models.builtin import ARTIFACTS

    path = ARTIFACTS[record.name](ctx.settings)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    key = model_artifact(BUILTIN_TENANT, record.name, sha, record.format)
    ctx.storage.put(key, data, "application/octet-stream")
    return replace(record, artifact=key, sha256=sha, size=len(data))


def validate_model(ctx: WorkerContext, tenant: str, name: str) -> ModelStatus | None:
    """Validate a `validating` model and store the verdict; returns it (None: nothing to do)."""
    import torch

    from worker.engine.core import model_logits
    from worker.engine.max_pooling import max_pool_before
    from worker.kinds.top_activations.feature_maps import model_layers
    from worker.models.build import build_model

    owner = ctx.models.owner(tenant, name)
    record = ctx.models.get(tenant, name) if owner else None
    if record is None or record.status != ModelStatus.VALIDATING:
        return None
    if record.builtin and not record.artifact:
        record = _builtin_artifact(ctx, record)
    side = record.spec.preprocessing.input_size
    try:
        model = build_model(record.spec, fetch_artifact(ctx, record),
                            max_bytes=ctx.settings.max_model_bytes).eval().requires_grad_(False)
        with torch.no_grad():
            logits = model_logits(model(torch.zeros(1, 3, side, side)))
        layers = model_layers(model, side).with_max_pooling(max_pool_before(model, side))
        if logits.shape[1] != record.spec.num_classes:
            raise InputError(f"the model outputs {logits.shape[1]} classes, its spec says "
                             f"num_classes={record.spec.num_classes}")
    except InputError as e:
        verdict = record.with_status(ModelStatus.INVALID, e.message)
    except (RuntimeError, ValueError) as e:  # e.g. an input too small for the architecture
        verdict = record.with_status(
            ModelStatus.INVALID, f"the model cannot run on a {side} px input: {str(e)[:500]}")
    else:
        verdict = record.with_status(ModelStatus.READY, None, layers)
    ctx.models.put(owner, verdict, replace=True)
    log.info("model %s/%s is %s%s", owner, name, verdict.status.value,
             f": {verdict.error}" if verdict.error else "")
    return verdict.status
