"""Files the API serves itself, at signed URLs: output files of local storage, and the maps of
data-set jobs, cut from their shard with ranged reads and rendered on demand."""

from __future__ import annotations

import functools
import io

import numpy as np
from flask import Blueprint, Flask, Response

from api.context import services
from api.items import find_record
from api.jobs import own_job
from shared.errors import InputError, NotFoundError
from shared.media.images import display_picture, sniff_format
from shared.media.renderings import Rendering
from shared.state.jobs import Job
from shared.storage.keys import JobKeys, MapName
from shared.storage.shards import read_header, read_map

bp = Blueprint("files", __name__, url_prefix="/v1/jobs")
CONTENT_TYPES = {".npy": "application/octet-stream", ".png": "image/png",
                 ".json": "application/json"}


def _file(data: bytes, name: str) -> Response:
    """Stored bytes as a response typed by the name's suffix, cached privately for an hour."""
    media = CONTENT_TYPES.get(name[name.rfind("."):], "application/octet-stream")
    response = Response(data, mimetype=media)
    response.cache_control.private = True
    response.cache_control.max_age = 3600
    return response


def _stored(job_id: str, name: str, key_of, what: str) -> Response:
    job = own_job(job_id)
    try:
        data = services().storage.get(key_of(JobKeys(job.tenant, job.id), name))
    except (FileNotFoundError, ValueError):
        raise NotFoundError(f"no {what} {name[:100]!r} in job {job_id}") from None
    return _file(data, name)


@bp.get("/<job_id>/files/<path:name>")
def file(job_id: str, name: str):
    return _stored(job_id, name, JobKeys.file_key, "file")


@bp.get("/<job_id>/report/files/<path:name>")
def report_file(job_id: str, name: str):
    return _stored(job_id, name, JobKeys.artifact, "report file")


@functools.lru_cache(maxsize=256)
def _header(storage, key: str):
    return read_header(storage, key)


def _input_picture(job: Job, uri: str, side: int) -> np.ndarray:
    """The item's picture as the model saw it (resized and cropped), for an overlay; grey
    when the input is an array already in the model's input space."""
    svc = services()
    try:
        prep = svc.models.for_job(job).spec.preprocessing
    except InputError:  # the model was deleted or replaced: its preprocessing is not the job's
        prep = None
    location = svc.locator.locate(uri, job.tenant, "input")
    data = location.storage.get(location.key)
    if prep is None or sniff_format(data) == "npy":
        return np.full((side, side, 3), 128, dtype=np.uint8)
    return display_picture(data, prep.input_size, prep.resize, svc.settings.max_image_pixels)


@bp.get("/<job_id>/maps/<path:name>")
def map_file(job_id: str, name: str):
    job = own_job(job_id)
    wanted = MapName.parse(name)
    if wanted is None:
        raise NotFoundError(f"no map {name[:100]!r}; maps are <index>/<position>[/<rank>]"
                            ".npy|.png|.overlay.png|.signed.png, as the job's items give them")
    record = find_record(job, wanted.index)
    output = record.output(wanted.position, wanted.rank) if record else None
    if output is None or output.map is None:
        rank = "" if wanted.rank is None else f" of target rank {wanted.rank}"
        raise NotFoundError(f"item {wanted.index} of job {job_id} has no map of method "
                            f"position {wanted.position}{rank}")
    storage = services().storage
    values = read_map(storage, output.map.shard, wanted.position, output.map.row,
                      _header(storage, output.map.shard))
    if wanted.kind == "npy":
        buf = io.BytesIO()
        np.save(buf, values)
        return _file(buf.getvalue(), name)
    drawing = Rendering.of(job.spec.work, output.params, output.grid)
    photo = _input_picture(job, record.input, values.shape[-1]) if drawing.needs_photo(
        wanted.kind) else None
    data, _ = drawing.draw(wanted.kind, values, photo)
    return _file(data, name)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
