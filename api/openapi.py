"""`/openapi.json`: the contract of API v1, kept true by tests/api/test_openapi.py."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from flask import Blueprint, Flask, jsonify

bp = Blueprint("openapi", __name__)


@cache
def document() -> dict:
    return json.loads(files("api").joinpath("openapi.json").read_text())


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
