"""`GET /v1/webhooks/secret`: the tenant's webhook signing secret, to verify deliveries."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify

from api.context import services, tenant
from shared.errors import NotFoundError
from shared.webhooks import EVENTS, tenant_secret

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


@bp.get("/secret")
def secret():
    master = services().settings.webhook_master_key
    if not master:
        raise NotFoundError("webhooks are not enabled (SALIENCY_WEBHOOK_MASTER_KEY is unset)")
    return jsonify({"secret": tenant_secret(master, tenant()), "events": list(EVENTS),
                    "scheme": "Standard Webhooks (webhook-id, webhook-timestamp, "
                              "webhook-signature)"})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
