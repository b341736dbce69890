"""Probes: alive (`/healthz`) and ready — Redis and storage reachable (`/readyz`)."""

from __future__ import annotations

import redis
from flask import Blueprint, Flask, jsonify

from api.context import services
from api.errors import error_response
from shared.storage import StorageError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    svc = services()
    try:
        svc.store.redis.ping()
    except (redis.ConnectionError, redis.TimeoutError) as e:
        return error_response(503, "unavailable", f"redis: {e}")
    try:
        svc.storage.check()
    except StorageError as e:
        return error_response(503, "unavailable", f"storage: {e}")
    return jsonify({"status": "ready"})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
