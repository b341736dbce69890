"""One error shape for the whole API: `{"error": {"code", "message"}}`, produced here only."""

from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from shared.errors import InputError
from shared.storage import StorageError

log = logging.getLogger(__name__)


class ApiError(InputError):
    """An error raised by a view with an explicit status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


def _handle(error: Exception):
    if isinstance(error, InputError):
        return error_response(error.status, error.code, error.message)
    if isinstance(error, HTTPException):
        code = "too_large" if error.code == 413 else (error.name or "error").lower()
        response = error_response(error.code or 500, code.replace(" ", "_"), error.description)
        if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response[0].headers["Allow"] = ", ".join(error.valid_methods)
        return response
    if isinstance(error, (StorageError, redis.ConnectionError, redis.TimeoutError)):
        log.warning("backend unavailable: %s", error)
        return error_response(503, "unavailable", f"a backend is unavailable: {error}")
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the server log")


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, _handle)
