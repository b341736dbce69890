"""Reading job and model requests: parts, sizes, formats — all checked before anything is stored.

No torch here: images are checked with Pillow and numpy (`shared.media.images`), pixel counts from
the header before decoding; model artifacts by their container format only, streamed from
the request's spooled file, never read into memory whole. JSON is parsed strictly
(`shared.jsonio`: no NaN, bounded nesting).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO, Any

from flask import request

from shared.errors import SpecError, TooLargeError, UnsupportedMediaError
from shared.jsonio import loads
from shared.media import images
from shared.models.artifacts import MAX_SAFETENSORS_HEADER, check_pt2, safetensors_header
from shared.results.records import InputSource
from shared.settings import Settings
from shared.spec.datasets import DatasetSpec, parse_dataset, parse_inline_inputs
from shared.spec.inputs import named_uploads
from shared.spec.job import KIND_SPECS
from shared.spec.model import TRANSFORMERS


@dataclass(frozen=True)
class Upload:
    """One uploaded input: its part's file name, bytes and sniffed format."""

    name: str
    data: bytes
    format: str


@dataclass(frozen=True)
class JobRequest:
    """A job request as read: the spec fields, and its inputs of one of three kinds."""

    spec: dict[str, Any]
    uploads: tuple[Upload, ...] = ()
    inline: tuple[InputSource, ...] = ()
    dataset: DatasetSpec | None = None
    fingerprint: str = ""  # sha256 of the canonical spec and every file part (idempotency)
    named: dict[str, Upload] | None = None  # other file parts: inputs the spec names



def _json_part(name: str) -> Any:
    if name in request.form:
        raw: str | bytes = request.form[name]
    elif name in request.files:
        raw = request.files[name].read(1 << 20)
    else:
        raise SpecError(name, f"is required: a form part {name!r} holding JSON")
    return loads(raw, name)


def check_parts(allowed: set[str], single: set[str]) -> None:
    """Only `allowed` part names (a part with no name is not one), and at most one part of
    each name in `single`: two `spec` parts would leave which one counts to chance."""
    for name in set(request.form) | set(request.files):
        if name not in allowed:
            raise SpecError(str(name)[:80] if name else "(a part without a name)",
                            f"is not an expected part; expected {sorted(allowed)}")
    for name in sorted(single):
        if len(request.form.getlist(name)) + len(request.files.getlist(name)) > 1:
            raise SpecError(name, "is given more than once; send one part of that name")


def _fingerprint(spec: Any, files: list[tuple[str, bytes]]) -> str:
    """The sha256 of the canonical spec JSON plus each file part's name and sha256."""
    import json

    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode())
    for name, data in files:
        digest.update(b"\0" + name.encode("utf-8", "replace") + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _inputs_optional(spec: Any) -> bool:
    """Whether the spec's kind may name no input (`KindSpec.inputs_optional`)."""
    name = spec.get("kind") if isinstance(spec, dict) else None
    return isinstance(name, str) and name in KIND_SPECS and KIND_SPECS[name].inputs_optional


def read_job_request(settings: Settings) -> JobRequest:
    """Multipart (`spec` + `images`) or JSON (spec fields + `inputs` or `dataset`)."""
    if request.mimetype == "application/json":
        body = loads(request.get_data(cache=False), "body")
        if not isinstance(body, dict):
            raise SpecError("body", "must be a JSON object with the spec fields and inputs")
        spec = {k: v for k, v in body.items() if k not in ("inputs", "dataset")}
        for name in sorted(named_uploads(spec)):
            raise SpecError(name[:80], '{"upload": ...} names a file part of a multipart job; '
                                       'a JSON job names its inputs by {"uri": ...}')
        if "inputs" in body and "dataset" in body:
            raise SpecError("dataset", "give either inputs or a dataset, not both")
        if "dataset" in body:
            return JobRequest(spec, dataset=parse_dataset(body["dataset"]),
                              fingerprint=_fingerprint(body, []))
        if _inputs_optional(body) and "inputs" not in body:
            return JobRequest(spec, fingerprint=_fingerprint(body, []))  # nothing to read
        inline = parse_inline_inputs(body.get("inputs"), settings.max_uris_per_job)
        return JobRequest(spec, inline=inline, fingerprint=_fingerprint(body, []))
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaError(
            "POST /v1/jobs takes multipart/form-data (spec + images) or application/json "
            f"(spec fields + inputs or dataset), not {request.mimetype or 'no content type'}"
        )
    # File parts besides `images` are the inputs the spec names (checked once it is read);
    # every part has a name, and `spec` and each named input come once.
    named_parts = {name for name in request.files if name} - {"images", "spec"}
    check_parts({"spec", "images"} | named_parts, single={"spec"} | named_parts)
    spec = _json_part("spec")
    wanted = named_uploads(spec)
    parts = set(request.files) - {"images", "spec"}
    for part in sorted(parts - wanted):
        raise SpecError(part[:80], "is not an expected part; expected 'spec', 'images' and the "
                                   'file parts the spec names ({"upload": name})')
    for part in sorted(wanted - parts):
        raise SpecError(part[:80], 'is named as {"upload": ...} but no file part of that name '
                                   "was sent")
    files = request.files.getlist("images")
    if not files and not _inputs_optional(spec):
        raise SpecError("images", "at least one file part 'images' is required")
    if len(files) > settings.max_images_per_job:
        raise TooLargeError(
            f"images: {len(files)} images exceed the limit of {settings.max_images_per_job}"
        )
    uploads = []
    for i, part in enumerate(files):
        data = part.read()
        name = (part.filename or f"image-{i}")[:255]
        what = f"images[{i}] ({name})"
        fmt = images.validate(data, settings.accepted_formats, settings.max_image_pixels, what,
                              settings.max_aspect_ratio)
        uploads.append(Upload(name, data, fmt))
    named = {}
    for part in sorted(parts):
        data = request.files[part].read()
        fmt = images.validate(data, settings.accepted_formats, settings.max_image_pixels,
                              part[:80], settings.max_aspect_ratio)
        named[part] = Upload(part, data, fmt)
    fingerprint = _fingerprint(spec, [(u.name, u.data) for u in [*uploads, *named.values()]])
    return JobRequest(spec if isinstance(spec, dict) else {"_": spec}, tuple(uploads),
                      fingerprint=fingerprint, named=named)


# The artifact's file part -> the model's format (`shared.storage.keys.MODEL_EXTENSIONS`).
ARTIFACT_PARTS = {"weights": "safetensors", "program": "pt2", "bundle": TRANSFORMERS}


def read_model_request() -> tuple[Any, str, IO[bytes]]:
    """The `spec` JSON and exactly one artifact part: `weights` (safetensors), `program`
    (`.pt2`) or `bundle` (a Hugging Face folder as zip or tar.gz), as a stream and its
    format; `check_artifact` or `shared.models.bundles.read_bundle` checks its container."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaError(
            "POST /v1/models takes multipart/form-data: spec + weights (or program, or bundle)"
        )
    parts = {"spec", *ARTIFACT_PARTS}
    check_parts(parts, single=parts)
    spec = _json_part("spec")
    present = [name for name in ARTIFACT_PARTS if name in request.files]
    if len(present) != 1:
        raise SpecError("weights", "exactly one file part is required: weights, program or "
                                   "bundle")
    return spec, ARTIFACT_PARTS[present[0]], request.files[present[0]].stream


def check_artifact(kind: str, stream: IO[bytes]) -> None:
    """A safetensors header, or a `.pt2` archive that loads without unpickling anything."""
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    if kind == "safetensors":
        head = stream.read(8)
        if len(head) == 8 and int.from_bytes(head, "little") <= min(size - 8,
                                                                    MAX_SAFETENSORS_HEADER):
            head += stream.read(int.from_bytes(head, "little"))
        safetensors_header(head, size)
    else:
        check_pt2(stream)
    stream.seek(0)
