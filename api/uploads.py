"""`POST /v1/uploads`: files stored in the tenant's own area, for its data-set jobs.

Multipart: file parts `files`, each named by its path relative to the data set's root (e.g.
`tabby/001.jpg`, so that `"labels": "folder"` finds the class folders), and an optional field
`prefix` (a folder name for this data set). Every file is checked like a job's image;
answers the URIs, and the prefix's URI to use in `{"dataset": {"prefix": ...}}`. Sending a
file again overwrites it, so an interrupted upload can simply be resumed.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, jsonify, request

from api.context import services, tenant
from api.requests import check_parts
from shared.errors import SpecError, TooLargeError, UnsupportedMediaError
from shared.media import images
from shared.storage.interface import check_key
from shared.storage.keys import upload_prefix

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")
PART_RE = re.compile(r"^[^\x00-\x1f\x7f\\]{1,255}$")


def _relative(name: str, field: str) -> str:
    """A safe relative path: no `..`, `.`, empty or absolute parts, no control characters."""
    if not name or not PART_RE.match(name) or name.startswith("/"):
        raise SpecError(field, "must be a relative path of 1 to 255 printable characters")
    try:
        return check_key(name)
    except ValueError:
        raise SpecError(field, f"{name[:80]!r} is not a plain relative path") from None


@bp.post("")
def upload():
    svc = services()
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaError("POST /v1/uploads takes multipart/form-data: files parts")
    check_parts({"files", "prefix"}, single={"prefix"})
    if "files" in request.form:
        raise SpecError("files", "must be file parts (with a file name), not fields")
    if "prefix" in request.files:
        raise SpecError("prefix", "must be a field, not a file part")
    prefix = _relative(request.form.get("prefix", "default"), "prefix")
    files = request.files.getlist("files")
    if not files:
        raise SpecError("files", "at least one file part 'files' is required")
    if len(files) > svc.settings.max_images_per_job:
        raise TooLargeError(f"files: {len(files)} files exceed the limit of "
                            f"{svc.settings.max_images_per_job} per request")
    checked = []
    for i, part in enumerate(files):
        name = _relative(part.filename or "", f"files[{i}]")
        data = part.read()
        images.validate(data, svc.settings.accepted_formats, svc.settings.max_image_pixels,
                        f"files[{i}] ({name})", svc.settings.max_aspect_ratio)
        checked.append((f"{upload_prefix(tenant())}/{prefix}/{name}", data))
    for key, data in checked:
        svc.storage.put(key, data)
    return jsonify({"uris": [svc.storage.uri(key) for key, _ in checked],
                    "prefix": svc.storage.uri(f"{upload_prefix(tenant())}/{prefix}") + "/"}), 201


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
