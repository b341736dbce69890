"""Probes: alive (`/healthz`, touches nothing) and ready (`/readyz`: Redis and storage answer
within a few seconds, else `503` naming the backend)."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify

from api.context import services
from api.errors import error_response
from shared.redisio import TRANSIENT
from shared.storage import StorageError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    svc = services()
    try:
        svc.redis.ping()
    except TRANSIENT as e:
        return error_response(503, "unavailable", f"redis: {e}")
    try:
        svc.storage.check()
    except StorageError as e:
        return error_response(503, "unavailable", f"storage: {e}")
    return jsonify({"status": "ready"})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
