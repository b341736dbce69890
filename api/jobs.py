"""Jobs: submit (202 + Location), poll, cancel, page through items, the report and results.

Views are thin: `api.submission` accepts a job, `api.items` builds items, `api.files` serves
files and maps.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, Flask, Response, g, jsonify, redirect, request, stream_with_context

from api.context import services, tenant
from api.items import artifact_url, page
from api.requests import read_job_request
from api.submission import submit as accept
from shared.errors import ExpiredError, NotFoundError, NotReadyError, SpecError
from shared.results.reports import resolve_artifacts
from shared.results.table import MEDIA_TYPES, convert
from shared.state.jobs import Job
from shared.status import JobStatus
from shared.storage.keys import RESULT_FORMATS, JobKeys
from shared.taskqueue import NEXT_PHASE, send_control

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_PAGE = 1000


def own_job(job_id: str) -> Job:
    """The job if it is the caller's (or the caller holds a URL the API signed for it);
    `410` for an expired one of theirs (a signed URL names its job, as a key its tenant)."""
    svc = services()
    if not JOB_ID_RE.match(job_id):
        raise NotFoundError(f"no job {job_id[:40]!r}")
    job = svc.jobs.get(job_id)
    if job is not None and (g.signed or job.tenant == tenant()):
        return job
    if job is None and (owner := svc.jobs.tombstone(job_id)) is not None and (
            g.signed or owner == tenant()):
        raise ExpiredError(f"job {job_id}'s results expired and were deleted")
    raise NotFoundError(f"no job {job_id!r}")


def _int_arg(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 12 or int(raw) < minimum or (
            maximum is not None and int(raw) > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(name, f"must be an integer {bound}, got {raw[:20]!r}")
    return int(raw)


@bp.post("")
def submit():
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 255:
        raise SpecError("Idempotency-Key", "must be 1 to 255 characters")
    accepted = accept(read_job_request(services().settings), key)
    response = jsonify({"id": accepted.id, "status": accepted.status})
    response.status_code = 202
    response.headers["Location"] = f"/v1/jobs/{accepted.id}"
    return response


@bp.get("/<job_id>")
def get(job_id: str):
    return jsonify(own_job(job_id).to_json())


@bp.delete("/<job_id>")
def cancel(job_id: str):
    job = own_job(job_id)
    svc = services()
    if svc.jobs.request_final(job.id, JobStatus.CANCELLED, "cancelled by the client"):
        send_control(svc.sender, NEXT_PHASE, job.id)
    return jsonify(own_job(job_id).to_json())


@bp.get("/<job_id>/items")
def items(job_id: str):
    job = own_job(job_id)
    cursor = _int_arg("cursor", 0, 0)
    limit = _int_arg("limit", 100, 1, MAX_PAGE)
    end = min(cursor + limit, job.total)
    return jsonify({"items": page(job, cursor, end),
                    "next_cursor": str(end) if end < job.total else None})


def require_final(job: Job, what: str) -> None:
    if not job.is_final:
        raise NotReadyError(f"the job's {what} is written when the job ends (it is "
                            f"{job.status.value}); poll the job until it is final")


@bp.get("/<job_id>/report")
def report(job_id: str):
    job = own_job(job_id)
    require_final(job, "report")
    keys = JobKeys(job.tenant, job.id)
    stored = json.loads(services().storage.get(keys.report))
    return jsonify(resolve_artifacts(stored, lambda name: artifact_url(job, name)))


@bp.get("/<job_id>/results")
def results(job_id: str):
    job = own_job(job_id)
    fmt = request.args.get("format", "parquet")
    if fmt not in RESULT_FORMATS:
        raise SpecError("format", f"must be one of {list(RESULT_FORMATS)}")
    require_final(job, "results file")
    svc = services()
    key = JobKeys(job.tenant, job.id).results("parquet")
    filename = f"results-{job.id}.{fmt}"
    if fmt == "parquet":
        url = svc.storage.presigned_url(key, svc.settings.presign_expires_s)
        if url is not None:
            return redirect(url, code=302)
        response = Response(svc.storage.get(key), mimetype=MEDIA_TYPES["parquet"])
    else:
        import io

        data = io.BytesIO(svc.storage.get(key))
        response = Response(stream_with_context(convert(data, fmt)), mimetype=MEDIA_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
