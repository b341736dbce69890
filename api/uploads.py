"""Reading job and model requests: parts, sizes, formats — all checked before anything is stored.

No torch here: images are checked with Pillow and numpy (`shared.images`), pixel counts from
the header before decoding; model artifacts by their container format only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from flask import request

from shared import images
from shared.errors import SpecError, TooLargeError, UndecodableError, UnsupportedMediaError
from shared.settings import Settings
from shared.specs import parse_input_uris


@dataclass(frozen=True)
class Upload:
    """One uploaded input: its file name, bytes and sniffed format."""

    name: str
    data: bytes
    format: str


@dataclass(frozen=True)
class JobRequest:
    spec: dict[str, Any]
    uploads: tuple[Upload, ...] = ()
    uris: tuple[str, ...] = ()


def _json_part(name: str) -> Any:
    if name in request.form:
        raw = request.form[name]
    elif name in request.files:
        raw = request.files[name].read().decode("utf-8", "replace")
    else:
        raise SpecError(name, f"is required: a form part {name!r} holding JSON")
    try:
        return json.loads(raw)
    except ValueError as e:
        raise SpecError(name, f"is not valid JSON ({e})") from None


def _check_parts(allowed: set[str]) -> None:
    for name in set(request.form) | set(request.files):
        if name not in allowed:
            raise SpecError(name, f"is not an expected part; expected {sorted(allowed)}")


def read_job_request(settings: Settings) -> JobRequest:
    """Multipart (`spec` + `images`) or JSON (spec fields + `inputs`); 415 for anything else."""
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise SpecError("body", "must be a JSON object with the spec fields and inputs")
        uris = parse_input_uris(body.get("inputs"))
        if len(uris) > settings.max_uris_per_job:
            raise TooLargeError(
                f"inputs: {len(uris)} inputs exceed the limit of {settings.max_uris_per_job}"
            )
        return JobRequest({k: v for k, v in body.items() if k != "inputs"}, uris=uris)
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaError(
            "POST /v1/jobs takes multipart/form-data (spec + images) or application/json "
            f"(spec fields + inputs), not {request.mimetype or 'no content type'}"
        )
    _check_parts({"spec", "images"})
    spec = _json_part("spec")
    files = request.files.getlist("images")
    if not files:
        raise SpecError("images", "at least one file part 'images' is required")
    if len(files) > settings.max_images_per_job:
        raise TooLargeError(
            f"images: {len(files)} images exceed the limit of {settings.max_images_per_job}"
        )
    uploads = []
    for i, part in enumerate(files):
        data = part.read()
        what = f"images[{i}] ({part.filename or 'unnamed'})"
        fmt = images.validate(data, settings.accepted_formats, settings.max_image_pixels, what)
        uploads.append(Upload(part.filename or f"image-{i}", data, fmt))
    return JobRequest(spec, tuple(uploads))


def _check_safetensors(data: bytes) -> None:
    """A safetensors file: 8-byte little-endian header length, then a JSON object."""
    if len(data) < 8:
        raise UndecodableError("weights: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        if n > len(data) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(data[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except ValueError as e:
        raise UndecodableError(f"weights: not a safetensors file ({e})") from None


def read_model_request() -> tuple[Any, str, bytes]:
    """The `spec` JSON and exactly one artifact part: `weights` (safetensors) or `program`."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaError(
            "POST /v1/models takes multipart/form-data: spec + weights (or program)"
        )
    _check_parts({"spec", "weights", "program"})
    spec = _json_part("spec")
    present = [name for name in ("weights", "program") if name in request.files]
    if len(present) != 1:
        raise SpecError("weights", "exactly one file part is required: weights or program")
    data = request.files[present[0]].read()
    if present[0] == "weights":
        _check_safetensors(data)
        return spec, "safetensors", data
    if not data.startswith(b"PK\x03\x04"):
        raise UndecodableError("program: not a torch.export .pt2 archive")
    return spec, "pt2", data
