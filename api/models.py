"""Models: register (weights for a torchvision architecture, or an admin's .pt2), list, show."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request

from api.auth import require_admin
from api.context import services, tenant
from api.uploads import read_model_request
from shared.errors import NotFoundError
from shared.registry import model_json, register_model
from shared.specs import MODEL_NAME_RE, parse_model_spec

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.before_request
def _model_size_limit() -> None:
    # Weights are larger than any job request; they get their own limit.
    if request.method == "POST":
        request.max_content_length = services().settings.max_model_bytes


@bp.post("")
def register():
    raw_spec, kind, data = read_model_request()
    if kind == "pt2":
        require_admin("registering a .pt2 program (which is code)")
    spec = parse_model_spec(raw_spec, needs_architecture=kind == "safetensors")
    svc = services()
    record = register_model(svc.store, svc.storage, tenant(), spec, kind, data)
    response = jsonify(model_json(record))
    response.status_code = 201
    response.headers["Location"] = f"/v1/models/{spec.name}"
    return response


@bp.get("")
def index():
    return jsonify({"models": [model_json(r) for r in services().store.list_models(tenant())]})


def _lookup(name: str) -> dict:
    record = services().store.get_model(tenant(), name) if MODEL_NAME_RE.match(name) else None
    if record is None:
        raise NotFoundError(f"no model {name!r}")
    return record


@bp.get("/<name>")
def show(name: str):
    return jsonify(model_json(_lookup(name)))


@bp.delete("/<name>")
def delete(name: str):
    svc = services()
    record = svc.store.delete_model(tenant(), name) if MODEL_NAME_RE.match(name) else None
    if record is None:
        raise NotFoundError(f"no model {name!r} of yours (built-in models cannot be deleted)")
    svc.storage.delete(record["artifact"])
    return "", 204


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
