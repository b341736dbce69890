"""Example photos for "try an example": a list with credits and licences, and the bytes."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify

from api.context import base_url
from shared.examples import EXAMPLES, get_example

bp = Blueprint("examples", __name__, url_prefix="/v1/examples")


@bp.get("")
def index():
    return jsonify({"examples": [
        {"name": e.name, "filename": e.filename, "media_type": e.media_type, "title": e.title,
         "credit": e.credit, "licence": e.licence, "url": f"{base_url()}/v1/examples/{e.name}"}
        for e in EXAMPLES.values()
    ]})


@bp.get("/<name>")
def get(name: str):
    example = get_example(name)  # 404 names the known ones
    response = Response(example.read_bytes(), mimetype=example.media_type)
    response.headers["Content-Disposition"] = f'inline; filename="{example.filename}"'
    response.cache_control.max_age = 86400
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
