"""Models: register (weights for a known architecture, or an admin's .pt2), list, show, delete.

A registration is answered `201` with `"status": "validating"` once its container checks
out; a worker then builds the model and makes it `ready` or `invalid` (see
`worker.engines.validate_model`). Weights are streamed to storage, never held in memory.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request

from api.auth import require_admin
from api.context import services, tenant
from api.requests import check_artifact, read_model_request
from shared.errors import NotFoundError
from shared.modelspec import MODEL_NAME_RE, known_architectures, parse_model_spec
from shared.modelstore import ModelRecord
from shared.registry import register_model
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
    if kind == "pt2":
        require_admin("registering a .pt2 program")
    spec = parse_model_spec(raw_spec, needs_architecture=kind == "safetensors")
    check_artifact(kind, stream)
    svc = services()
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
    """The architecture names a model spec may use."""
    return jsonify({"architectures": sorted(known_architectures())})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(architectures)
