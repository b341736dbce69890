"""Jobs: submit (202 + Location), poll, page through items, cancel, and serve local artifacts."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from api.context import base_url, services, tenant
from api.uploads import read_job_request
from shared.errors import NotFoundError, SpecError, UndecodableError
from shared.images import EXTENSIONS, npy_shape
from shared.jobstore import Job
from shared.registry import record_spec
from shared.specs import OUTPUTS, parse_job_spec
from shared.status import ItemStatus, JobStatus
from shared.taskqueue import send_chunks

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_PAGE = 1000
CONTENT_TYPES = {".npy": "application/octet-stream", ".png": "image/png"}


def job_prefix(tenant_name: str, job_id: str) -> str:
    return f"t/{tenant_name}/jobs/{job_id}"


def _own_job(job_id: str) -> Job:
    job = services().store.get_job(job_id) if JOB_ID_RE.match(job_id) else None
    if job is None or job.tenant != tenant():
        raise NotFoundError(f"no job {job_id!r}")
    return job


def _accepted(job_id: str, status: str):
    response = jsonify({"id": job_id, "status": status})
    response.status_code = 202
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return response


def _uri_inputs(uris: tuple[str, ...]) -> list[dict[str, Any]]:
    storage, own = services().storage, f"t/{tenant()}/"
    inputs = []
    for i, uri in enumerate(uris):
        try:
            key = storage.key_for_uri(uri)
        except ValueError as e:
            raise SpecError(f"inputs[{i}].uri", str(e)) from None
        if key.startswith("t/") and not key.startswith(own):
            raise SpecError(f"inputs[{i}].uri", "names a private object of the service")
        inputs.append({"name": uri, "key": key})
    return inputs


@bp.post("")
def submit():
    svc = services()
    req = read_job_request(svc.settings)
    spec = parse_job_spec(req.spec)
    record = svc.store.get_model(tenant(), spec.model)
    if record is None:
        raise NotFoundError(f"model: no model {spec.model!r}; see GET /v1/models")
    model = record_spec(record)
    spec.check_model(model)
    size = model.preprocessing.input_size
    for i, upload in enumerate(req.uploads):
        if upload.format == "npy":
            shape = npy_shape(upload.data, svc.settings.max_image_pixels)
            if shape != (3, size, size):
                raise UndecodableError(
                    f"images[{i}] ({upload.name}): array of shape {shape} is not model "
                    f"{model.name!r}'s input (3, {size}, {size})"
                )
    uri_inputs = _uri_inputs(req.uris)
    idem = request.headers.get("Idempotency-Key")
    if idem is not None and not 0 < len(idem) <= 255:
        raise SpecError("Idempotency-Key", "must be 1 to 255 characters")

    job_id = uuid.uuid4().hex
    if idem is not None:
        existing = svc.store.reserve_idempotency(
            tenant(), idem, job_id, svc.settings.idempotency_ttl_s
        )
        if existing is not None:
            job = svc.store.get_job(existing)
            return _accepted(existing, job.status.value if job else JobStatus.QUEUED.value)
    stored: list[str] = []
    try:
        inputs = list(uri_inputs)
        for i, upload in enumerate(req.uploads):
            key = f"{job_prefix(tenant(), job_id)}/inputs/{i:06d}.{EXTENSIONS[upload.format]}"
            svc.storage.put(key, upload.data)
            stored.append(key)
            inputs.append({"name": upload.name, "key": key})
        svc.store.create_job(job_id, tenant(), spec.to_json(), inputs)
    except BaseException:
        for key in stored:
            svc.storage.delete(key)
        if idem is not None:
            svc.store.release_idempotency(tenant(), idem)
        raise
    try:
        send_chunks(svc.sender, job_id, len(inputs), svc.settings.chunk_size)
    except BaseException:
        svc.store.transition(
            job_id, JobStatus.FAILED, (JobStatus.QUEUED,), "the job could not be enqueued"
        )
        raise
    return _accepted(job_id, JobStatus.QUEUED.value)


@bp.get("/<job_id>")
def get(job_id: str):
    return jsonify(_own_job(job_id).to_json())


@bp.delete("/<job_id>")
def cancel(job_id: str):
    job = _own_job(job_id)
    services().store.transition(
        job.id, JobStatus.CANCELLED, (JobStatus.QUEUED, JobStatus.RUNNING)
    )
    return jsonify(_own_job(job_id).to_json())


def _int_arg(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(name, f"must be an integer {bound}, got {raw!r}")
    return int(raw)


def _url(job: Job, key: str | None) -> str | None:
    if key is None:
        return None
    svc = services()
    url = svc.storage.presigned_url(key, svc.settings.presign_expires_s)
    if url is not None:
        return url
    name = key[len(job_prefix(job.tenant, job.id)) + len("/outputs/") :]
    return f"{base_url()}/v1/jobs/{job.id}/files/{name}"


def _item_json(job: Job, index: int, source: dict[str, Any], rec: dict[str, Any] | None):
    if rec is None:
        pending = ItemStatus.CANCELLED if job.status == JobStatus.CANCELLED else ItemStatus.PENDING
        return {"index": index, "input": source["name"], "status": pending.value, "error": None,
                "prediction": None, "outputs": [], "worker": None}
    outputs = [
        {
            "method": out["method"],
            "target": out["target"],
            **{kind: _url(job, out.get(kind)) for kind in OUTPUTS},
            "coverage": out.get("coverage"),
        }
        for out in rec["outputs"]
    ]
    return {"index": index, "input": source["name"], "status": rec["status"],
            "error": rec["error"], "prediction": rec["prediction"], "outputs": outputs,
            "worker": rec.get("worker")}


@bp.get("/<job_id>/items")
def items(job_id: str):
    job = _own_job(job_id)
    cursor = _int_arg("cursor", 0, 0)
    limit = _int_arg("limit", 100, 1, MAX_PAGE)
    end = min(cursor + limit, job.total)
    store = services().store
    indices = list(range(cursor, end))
    sources = store.input_range(job.id, cursor, end) if indices else []
    records = store.items(job.id, indices)
    return jsonify({
        "items": [_item_json(job, i, s, r) for i, s, r in zip(indices, sources, records,
                                                                strict=True)],
        "next_cursor": str(end) if end < job.total else None,
    })


@bp.get("/<job_id>/files/<path:name>")
def file(job_id: str, name: str):
    job = _own_job(job_id)
    try:
        data = services().storage.get(f"{job_prefix(job.tenant, job.id)}/outputs/{name}")
    except (FileNotFoundError, ValueError):
        raise NotFoundError(f"no file {name!r} in job {job_id}") from None
    suffix = name[name.rfind(".") :]
    return Response(data, mimetype=CONTENT_TYPES.get(suffix, "application/octet-stream"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
