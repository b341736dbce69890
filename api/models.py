"""Models: register (weights for a known architecture, a Hugging Face bundle, or an admin's
.pt2), list, show, list a model's layers, delete.

A registration is answered `201` with `"status": "validating"` once its container checks
out; a worker then builds the model and makes it `ready` or `invalid` (see
`worker.jobs.models.validate_model`). Weights are streamed to storage, never held in memory; a
bundle's spec gets what the spec leaves out from the bundle's configs (`shared.models.hfconfig`).
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request

from api.auth import require_admin
from api.context import services, tenant
from api.requests import check_artifact, read_model_request
from shared.errors import (
    ConflictError,
    InvalidModelError,
    NotFoundError,
    NotReadyError,
    SpecError,
)
from shared.models.bundles import read_bundle
from shared.models.hfconfig import MODEL_TYPES, spec_from_bundle
from shared.models.registry import register_model
from shared.spec.model import MODEL_NAME_RE, TRANSFORMERS, known_architectures, parse_model_spec
from shared.state.modelstore import ModelRecord, ModelStatus
from shared.taskqueue import VALIDATE_MODEL, send_control

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.before_request
def _model_size_limit() -> None:
    # Weights are larger than any job request; they get their own limit.
    if request.method == "POST":
        request.max_content_length = services().settings.max_model_bytes


@bp.post("")
def register():
    raw_spec, kind, stream = read_model_request()
    svc = services()
    if kind == "pt2":
        require_admin("registering a .pt2 program")
    if kind == TRANSFORMERS:
        raw_spec = spec_from_bundle(raw_spec, read_bundle(stream, svc.settings.max_model_bytes))
    spec = parse_model_spec(raw_spec, needs_architecture=kind != "pt2")
    if kind == "safetensors" and spec.architecture == TRANSFORMERS:
        raise SpecError("architecture", f"{TRANSFORMERS!r} models are registered with a file "
                                        "part 'bundle' (a save_pretrained folder as a zip or "
                                        "a tar.gz), not 'weights'")
    if kind != TRANSFORMERS:
        check_artifact(kind, stream)
    record = register_model(svc.models, svc.storage, tenant(), spec, kind, stream)
    send_control(svc.sender, VALIDATE_MODEL, tenant(), spec.name)
    response = jsonify(record.api_json())
    response.status_code = 201
    response.headers["Location"] = f"/v1/models/{spec.name}"
    return response


@bp.get("")
def index():
    return jsonify({"models": [r.api_json() for r in services().models.list(tenant())]})


def _lookup(name: str) -> ModelRecord:
    record = services().models.get(tenant(), name) if MODEL_NAME_RE.match(name) else None
    if record is None:
        raise NotFoundError(f"no model {name[:80]!r}")
    return record


@bp.get("/<name>")
def show(name: str):
    return jsonify(_lookup(name).api_json())


@bp.get("/<name>/layers")
def layers(name: str):
    """Every module with its output shape and layout, as the model's first load found them."""
    record = _lookup(name)
    if record.status == ModelStatus.VALIDATING:
        raise NotReadyError(f"model {name!r} is being validated; its layers are recorded when "
                            "its first load ends: try again shortly")
    if record.status == ModelStatus.INVALID:
        raise InvalidModelError(f"model {name!r} is invalid, it has no layers: {record.error}")
    if not record.layers.known:
        raise ConflictError(f"model {name!r} was validated before layers were recorded, so "
                            "they are not known: register it again (delete it first, or use "
                            "another name) to have it validated again")
    return jsonify({"model": record.name, **record.layers.api_json()})


@bp.delete("/<name>")
def delete(name: str):
    svc = services()
    record = svc.models.delete(tenant(), name) if MODEL_NAME_RE.match(name) else None
    if record is None:
        raise NotFoundError(f"no model {name[:80]!r} of yours (built-in models cannot be deleted)")
    svc.storage.delete(record.artifact)
    return "", 204


architectures = Blueprint("architectures", __name__, url_prefix="/v1/architectures")


@architectures.get("")
def known():
    """The architecture names a model spec may use, and the model types of a bundle."""
    return jsonify({"architectures": sorted(known_architectures() | {TRANSFORMERS}),
                    "transformers_model_types": list(MODEL_TYPES)})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(architectures)
