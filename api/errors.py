"""One error shape for the whole API: `{"error": {"code", "message"}}`, produced here only."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from shared.errors import InputError, RateLimitedError
from shared.state.redisio import TRANSIENT
from shared.storage.interface import StorageError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


def _malformed_body(error: Exception) -> bool:
    """Gunicorn parses a chunked body only as the view reads it: a bad chunk, or a body that
    ends early, surfaces in the view as gunicorn's own exception. The client's fault: 400."""
    try:
        from gunicorn.http.errors import NoMoreData, ParseException
    except ImportError:  # served by another WSGI server
        return False
    return isinstance(error, (ParseException, NoMoreData))


def _handle(error: Exception):
    if isinstance(error, RateLimitedError):
        response = error_response(error.status, error.code, error.message)
        response[0].headers["Retry-After"] = str(int(error.retry_after))
        return response
    if isinstance(error, InputError):
        return error_response(error.status, error.code, error.message)
    if isinstance(error, HTTPException):
        code = "too_large" if error.code == 413 else (error.name or "error").lower()
        response = error_response(error.code or 500, code.replace(" ", "_"), error.description)
        if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response[0].headers["Allow"] = ", ".join(error.valid_methods)
        return response
    if _malformed_body(error):
        return error_response(400, "bad_request", f"the request's body is malformed ({error})")
    if isinstance(error, (StorageError, *TRANSIENT)):
        log.warning("backend unavailable: %s", error)
        response = error_response(503, "unavailable", f"a backend is unavailable: {error}")
        response[0].headers["Retry-After"] = "5"
        return response
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the server log")


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, _handle)


GUNICORN_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long",
                  417: "expectation_failed", 431: "headers_too_large", 500: "internal_error",
                  501: "not_implemented"}


def write_server_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Gunicorn's answer to a request it refuses before the app sees it (a request line or
    headers over its limits, malformed HTTP), in the API's error shape instead of HTML.
    Installed by `docker/gunicorn.conf.py` as `gunicorn.util.write_error`."""
    import json

    from gunicorn.util import write_nonblock

    code = GUNICORN_CODES.get(status_int, "bad_request")
    body = json.dumps({"error": {"code": code, "message": mesg or reason}})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    write_nonblock(sock, (head + body).encode("latin1", "replace"))
