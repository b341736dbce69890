"""The errors both sides raise: each names what was wrong and what to do about it.

`InputError` and its subclasses are bad input: they fail a request or an item at once and
are never retried. Anything else reaching a task boundary is treated as transient.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the caller; `status` and `code` are what the API answers with."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpecError(InputError):
    """A job or model spec field is invalid; the message names the field."""

    code = "invalid_spec"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFoundError(InputError):
    """An unknown job, model, item or artifact (or one of another tenant)."""

    status = 404
    code = "not_found"


class TooLargeError(InputError):
    """The request, an image or the number of images exceeds a configured limit."""

    status = 413
    code = "too_large"


class UnsupportedMediaError(InputError):
    """A content type or file format the service does not accept."""

    status = 415
    code = "unsupported_media_type"


class UndecodableError(InputError):
    """An image or array whose bytes cannot be decoded."""

    status = 422
    code = "undecodable_input"


class InvalidImageError(InputError):
    """An image that decodes but cannot be used (empty, or too elongated)."""

    status = 422
    code = "invalid_image"


class UnsupportedModelError(InputError):
    """The model cannot be attributed with the requested method (e.g. no rule for SiLU)."""

    status = 422
    code = "unsupported_model"


class TargetError(InputError):
    """A target that does not exist in the model (class index or layer out of range)."""

    status = 422
    code = "invalid_target"


class UnauthorizedError(InputError):
    """No API key, or one that is not configured."""

    status = 401
    code = "unauthorized"


class ForbiddenError(InputError):
    """The key's tenant may not do this (e.g. register a `.pt2` program without the admin role)."""

    status = 403
    code = "forbidden"


class ConflictError(InputError):
    """The resource already exists (e.g. a model name registered twice)."""

    status = 409
    code = "conflict"


class InvalidModelError(InputError):
    """The model failed validation (weights that do not fit its architecture, a broken
    program); jobs on it are refused."""

    status = 422
    code = "invalid_model"


class IdempotencyMismatchError(InputError):
    """An `Idempotency-Key` reused with a different request."""

    status = 422
    code = "idempotency_mismatch"


class ExpiredError(InputError):
    """The job's results were deleted after its retention period."""

    status = 410
    code = "expired"


class NotReadyError(InputError):
    """Asked for a job's report or results before they exist."""

    status = 409
    code = "not_ready"


class RateLimitedError(InputError):
    """Too many requests, or too many queued items, for the tenant; `retry_after` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
