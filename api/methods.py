"""Methods: what the engine can compute, and the options a job spec takes."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify

from shared.spec.job import OUTPUTS, REDUCTIONS
from shared.spec.methods import DEFAULT_METHODS, METHODS
from shared.spec.targets import MAX_TOPK

bp = Blueprint("methods", __name__, url_prefix="/v1/methods")


@bp.get("")
def index():
    return jsonify({
        "methods": [info.to_json() for info in METHODS.values()],
        "default_methods": list(DEFAULT_METHODS),
        "targets": ["predicted", {"class": "k"}, {"topk": f"1..{MAX_TOPK}"},
                    {"layer": "name", "channel": "c", "position": "[y, x] (optional)"}],
        "reductions": list(REDUCTIONS),
        "outputs": list(OUTPUTS),
    })


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
