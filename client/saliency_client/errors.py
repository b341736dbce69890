"""The exceptions the SDK raises; each CLI exit code maps to one of them."""

from __future__ import annotations


class SaliencyError(Exception):
    """Base class of every error this package raises."""


class ApiError(SaliencyError):
    """The API answered with an error: carries its HTTP `status`, `code` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}")
        self.status = status
        self.code = code
        self.message = message


class ConnectionFailed(SaliencyError):
    """The API could not be reached, even after retrying."""


class JobFailed(SaliencyError):
    """A job ended `failed` or `cancelled` where the caller needed it to succeed."""

    def __init__(self, job_id: str, status: str, error: str | None) -> None:
        super().__init__(f"job {job_id} {status}" + (f": {error}" if error else ""))
        self.job_id = job_id
        self.status = status
        self.error = error


class WaitTimeout(SaliencyError, TimeoutError):
    """`Job.wait(timeout=...)` ran out of time before the job finished."""


class MissingDependency(SaliencyError, ImportError):
    """An optional package (pandas, pyarrow) is needed for this call; the message says how."""


class WebhookVerificationError(SaliencyError):
    """A webhook delivery's signature or timestamp did not verify: do not trust its body."""
