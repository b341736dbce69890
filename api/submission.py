"""Accepting a job: validate everything, store the inputs, write the job, start it.

Validation comes first — the spec, the model (it must exist and not be invalid), every file,
every URI's place, the quota — so a rejected request stores nothing and enqueues nothing.
Then uploads are stored, the job (pinned to the model record it was accepted for) and its
chunks are written in one Redis transaction, and the chunks are sent (or, for a data set, the
planner is); a failure on the way removes what was written.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from urllib.parse import urlparse

from kombu.exceptions import OperationalError

from api.context import Services, services, tenant
from api.ratelimit import check_queue_quota
from api.requests import JobRequest
from shared.errors import (
    IdempotencyMismatchError,
    InvalidModelError,
    NotFoundError,
    SpecError,
    UndecodableError,
)
from shared.media.images import npy_shape
from shared.results.records import InputSource
from shared.spec.annotations import AnnotationsSpec
from shared.spec.job import KIND_SPECS, JobSpec, parse_job_spec
from shared.spec.targets import LabelTarget
from shared.state.idempotency import IdempotencyKeys
from shared.state.jobs import NewJob
from shared.state.jobschema import ChunkStatus
from shared.state.modelstore import ModelPin, ModelRecord, ModelStatus
from shared.state.redisio import TRANSIENT
from shared.status import JobStatus
from shared.storage import webdataset
from shared.storage.keys import JobKeys
from shared.taskqueue import PLAN, chunk_ranges, pump, send_control
from shared.webhooks import parse_notify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    """The answer to a submit: the job's id and status, and whether it is new."""

    id: str
    status: str


def _model(svc: Services, spec: JobSpec) -> ModelRecord:
    record = svc.models.get(tenant(), spec.model)
    if record is None:
        raise NotFoundError(f"model: no model {spec.model!r}; see GET /v1/models")
    if record.status == ModelStatus.INVALID:
        raise InvalidModelError(f"model {spec.model!r} is invalid: {record.error}")
    return record


def _inline_sources(svc: Services, inline: tuple[InputSource, ...]) -> list[InputSource]:
    """Each inline input located (configured storage or a data-set root), or a 400."""
    out = []
    for i, source in enumerate(inline):
        location = svc.locator.locate(source.uri, tenant(), f"inputs[{i}].uri")
        if location.storage is svc.storage:
            source = replace(source, key=location.key)
        if source.mask is not None:
            svc.locator.locate(source.mask, tenant(), f"inputs[{i}].mask")
        out.append(source)
    return out


def _check_annotations(svc: Services, annotations: AnnotationsSpec) -> None:
    """A COCO file must exist and start as a JSON object (one ranged read); a VOC prefix
    must hold something. Everything else is checked by the planner."""
    field = annotations.field
    if annotations.coco:
        location = svc.locator.locate(annotations.coco, tenant(), field, own_area=True)
        try:
            head = location.storage.get_range(location.key, 0, 1024).lstrip()
        except FileNotFoundError:
            raise SpecError(field, f"no object at {annotations.coco!r}") from None
        if not head.startswith(b"{"):
            raise SpecError(field, f"{annotations.coco!r} is not a JSON object (a COCO "
                                   "instances file starts with '{')")
        return
    location = svc.locator.prefix(annotations.voc, tenant(), field)
    try:
        first = next(iter(location.storage.list(location.key)), None)
    except FileNotFoundError as e:
        raise SpecError(field, str(e)) from None
    if first is None:
        raise SpecError(field, f"nothing under {annotations.voc!r}")


def _check_dataset(svc: Services, req: JobRequest) -> None:
    """The data set (and its annotations) must be readable by the tenant and exist (its
    manifest, a pattern's first shard or a `.parquet` file; something under a prefix);
    nothing else is read."""
    dataset = req.dataset
    uri, field = dataset.uri, dataset.field
    single = bool(dataset.manifest or (dataset.webdataset and webdataset.is_pattern(uri))
                  or (dataset.huggingface and urlparse(uri).path.endswith(".parquet")))
    if single:
        if dataset.webdataset:  # the whole pattern lies under the folder before its braces
            svc.locator.prefix(webdataset.base_of(uri), tenant(), field)
            uri = next(webdataset.expand(uri, field))
        location = svc.locator.locate(uri, tenant(), field, own_area=True)
        if not location.storage.exists(location.key):
            raise SpecError(field, f"no object at {uri!r}")
    else:
        location = svc.locator.prefix(uri, tenant(), field)
        try:
            first = next(iter(location.storage.list(location.key)), None)
        except FileNotFoundError as e:  # a link out of its root
            raise SpecError(field, str(e)) from None
        if first is None:
            raise SpecError(field, f"nothing under {uri!r}")
    if dataset.annotations is not None:
        _check_annotations(svc, dataset.annotations)


def _check_inputs(spec: JobSpec, model: ModelRecord, req: JobRequest) -> None:
    if req.dataset:
        req.dataset.check_classes(model.spec)
    size = model.spec.preprocessing.input_size
    for i, upload in enumerate(req.uploads):
        if upload.format == "npy":
            shape = npy_shape(upload.data, services().settings.max_image_pixels)
            if shape != (3, size, size):
                raise UndecodableError(
                    f"images[{i}] ({upload.name}): array of shape {shape} is not model "
                    f"{model.name!r}'s input (3, {size}, {size})")
    if isinstance(getattr(spec.work, "target", None), LabelTarget) and not req.dataset:
        for i, source in enumerate(req.inline):
            if source.label is None:
                raise SpecError(f"inputs[{i}].label", 'is required by "target": "label"')
        if req.uploads:
            raise SpecError("target", '"label" needs inputs with labels (inline or a data set)')


def submit(req: JobRequest, idempotency_key: str | None) -> Accepted:
    """Validate, store and start a job; see the module's docstring."""
    svc = services()
    spec = replace(parse_job_spec(req.spec,
                                  parse_notify=lambda raw: parse_notify(raw, svc.settings)),
                   dataset=req.dataset)
    record = _model(svc, spec)
    kind = KIND_SPECS[spec.kind]
    kind.check(spec.work, record.spec, record.layer_shapes, svc.settings)
    spec = replace(spec, work=kind.with_layers(spec.work, record.layers))
    _check_inputs(spec, record, req)
    inline = _inline_sources(svc, req.inline)
    if req.dataset and kind.no_dataset:
        raise SpecError("dataset", kind.no_dataset)
    if req.dataset and req.dataset.annotations and not kind.reads_annotations:
        raise SpecError("dataset.annotations", "only an attribution job reads annotations "
                                               f"(for its audit's box metrics), not {spec.kind}")
    plan = None
    if req.dataset:
        _check_dataset(svc, req)
        check_queue_quota(tenant(), None)
    else:
        plan = kind.plan(spec.work, record.spec, len(req.uploads) + len(inline))
        check_queue_quota(tenant(), plan.total)

    job_id = uuid.uuid4().hex
    idem = IdempotencyKeys(svc.redis)
    if idempotency_key is not None:
        held = idem.reserve(tenant(), idempotency_key, job_id, req.fingerprint,
                            svc.settings.idempotency_ttl_s)
        if held is not None:
            if held[1] != req.fingerprint:
                raise IdempotencyMismatchError(
                    "Idempotency-Key: already used for a different request (another spec or "
                    "other files); use a new key for a new job")
            job = svc.jobs.get(held[0])
            return Accepted(held[0], job.status.value if job else JobStatus.QUEUED.value)
    keys = JobKeys(tenant(), job_id)
    stored: list[str] = []
    try:
        sources = list(inline)
        for i, upload in enumerate(req.uploads):
            key = keys.input(i, upload.format)
            svc.storage.put(key, upload.data)
            stored.append(key)
            sources.append(InputSource(name=upload.name, key=key))
        for name, upload in (req.named or {}).items():
            svc.storage.put(keys.ref(name), upload.data)
            stored.append(keys.ref(name))
        total = plan.total if plan else 0
        ranges = (plan.ranges if plan and plan.ranges is not None
                  else chunk_ranges(total, svc.settings.chunk_size))
        new = NewJob(id=job_id, tenant=tenant(), spec=spec, inputs=tuple(sources), total=total,
                     steps=plan.steps if plan else None, model_pin=ModelPin.of(tenant(), record))
        pipe = svc.redis.pipeline(transaction=True)
        svc.jobs.create(new, pipe)
        svc.chunks.add(pipe, job_id, ranges, ChunkStatus.PLANNED)
        pipe.execute()
    except BaseException:
        for key in stored:
            svc.storage.delete(key)
        if idempotency_key is not None:
            idem.release(tenant(), idempotency_key)
        raise
    _start(svc, job_id, record, bool(req.dataset))
    return Accepted(job_id, JobStatus.QUEUED.value)


def _start(svc: Services, job_id: str, record: ModelRecord, planning: bool) -> None:
    """Send the planner, or make the chunks ready and send them (once the model is ready; a
    `validating` model's worker starts the job's chunks when it is done)."""
    try:
        if planning:
            send_control(svc.sender, PLAN, job_id)
        elif record.status == ModelStatus.READY:
            svc.chunks.activate(job_id)
            pump(svc.sender, svc.fair)
    except (OSError, OperationalError, *TRANSIENT) as e:
        # The job is stored: the reconciler sends its planner or chunks once the broker is
        # back. Nothing is lost; the client still gets its job id.
        log.warning("job %s stored but not yet sent (the reconciler will): %s", job_id, e)
