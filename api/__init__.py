"""The HTTP API: validates requests, stores inputs, enqueues jobs, reports; never imports torch."""

from __future__ import annotations

import logging
import threading

from flask import Flask, request
from werkzeug.wsgi import LimitedStream

from shared.settings import Settings

log = logging.getLogger(__name__)
MAX_URL_CHARS = 4096
MAX_HEADER_BYTES = 16 * 1024


def _builtins_recorded(app: Flask):
    """Before the first answer: every built-in model has a record (`validating` until a worker
    has prepared it), so a first job on it is accepted and waits instead of meeting a 404."""
    from kombu.exceptions import OperationalError

    from shared.models.registry import ensure_builtin_records
    from shared.state.modelstore import BUILTIN_TENANT
    from shared.state.redisio import TRANSIENT
    from shared.taskqueue import VALIDATE_MODEL, send_control

    svc = app.extensions["saliency"]
    done = threading.Event()
    lock = threading.Lock()

    def ensure() -> None:
        if done.is_set() or not svc.settings.builtin_models:
            return
        with lock:
            if done.is_set():
                return
            try:
                for name in ensure_builtin_records(svc.models):
                    send_control(svc.sender, VALIDATE_MODEL, BUILTIN_TENANT, name)
            except (*TRANSIENT, OSError, OperationalError) as e:
                log.warning("built-in models not recorded yet (Redis unavailable): %s", e)
                return
            done.set()

    return ensure


def _limits() -> None:
    """An over-long URL or header block is answered in the API's error shape."""
    from shared.errors import InputError

    if len(request.url) > MAX_URL_CHARS:
        error = InputError(f"the URL is longer than {MAX_URL_CHARS} characters")
        error.status, error.code = 414, "uri_too_long"
        raise error
    if sum(len(k) + len(v) for k, v in request.headers.items()) > MAX_HEADER_BYTES:
        error = InputError(f"the request's headers exceed {MAX_HEADER_BYTES} bytes")
        error.status, error.code = 431, "headers_too_large"
        raise error


class WholeBody(LimitedStream):
    """A request's body read as its `Content-Length` announced it. Gunicorn hands the app
    whatever arrived before a client stopped sending; a body cut short is the client's error
    (400 `bad_request`), never a shorter request."""

    def on_disconnect(self, error: Exception | None = None) -> None:
        from shared.errors import InputError

        cause = f" ({error})" if error else ""
        raise InputError(f"the request's body ended before the {self.limit} bytes its "
                         f"Content-Length announced{cause}; send the whole body")


def _whole_body() -> None:
    if request.content_length is not None:
        request.environ["wsgi.input"] = WholeBody(request.environ["wsgi.input"],
                                                  request.content_length)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; connections open lazily, on first use."""
    from api import (
        auth,
        errors,
        examples,
        export,
        files,
        health,
        jobs,
        methods,
        metrics,
        models,
        openapi,
        pages,
        ratelimit,
        roots,
        uploads,
        webhooks,
    )
    from api.context import Services

    settings = settings or Settings.from_env()
    auth.check_exposure(settings, auth.load_keys(settings))  # before anything else starts
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_PARTS=settings.max_images_per_job + 16,
    )
    app.extensions["saliency"] = Services.create(settings)
    errors.init_app(app)
    app.before_request(_whole_body)
    app.before_request(_limits)
    auth.init_app(app)
    ratelimit.init_app(app)
    ensure = _builtins_recorded(app)

    @app.before_request
    def builtins() -> None:
        if request.path.startswith("/v1/"):
            ensure()

    for module in (health, metrics, openapi, jobs, files, export, models, methods, examples,
                   uploads, roots, webhooks):
        module.init_app(app)
    pages.init_app(app)
    return app
