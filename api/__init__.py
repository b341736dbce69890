"""The HTTP API: validates requests, stores inputs, enqueues jobs, reports; never imports torch."""

from __future__ import annotations

from flask import Flask

from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; connections open lazily, on first use."""
    from api import (
        auth,
        errors,
        examples,
        health,
        jobs,
        methods,
        metrics,
        models,
        openapi,
        pages,
    )
    from api.context import Services

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_PARTS=settings.max_images_per_job + 16,
    )
    app.extensions["saliency"] = Services.create(settings)
    for module in (errors, auth, health, metrics, openapi, jobs, models, methods, examples):
        module.init_app(app)
    pages.init_app(app)
    return app
