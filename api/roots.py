"""`GET /v1/roots`: where the tenant's data-set jobs may read — its own area of the configured
storage and the data-set roots open to it (`SALIENCY_DATASET_ROOTS`). The CLI's `audit` uses
it to skip uploading a folder the service can read already."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify

from api.context import services, tenant
from shared.storage.keys import tenant_prefix

bp = Blueprint("roots", __name__, url_prefix="/v1/roots")


@bp.get("")
def index():
    svc = services()
    own = svc.storage.uri(tenant_prefix(tenant())) + "/"
    roots = [root.uri for root in svc.locator.roots if root.tenant in (None, tenant())]
    return jsonify({"storage": own, "roots": roots})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
