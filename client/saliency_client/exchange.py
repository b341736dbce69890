"""One request's exchange with the API, as pure decisions: where it goes, which headers it
carries, and whether an answer is final, retried after a wait, followed (a redirect), or
raised as the SDK's error. The transports (`transport`) only send, stream and sleep.

What is retried:
- `429` (rate limited) and `503` with `Retry-After`: after the time the API asks for, within
  a bounded total wait (`RetryPolicy.max_wait`). A 429 is refused before any work, so every
  method is retried; a 503 like the other 5xx below.
- Connection trouble and 5xx answers, with exponential backoff (`RetryPolicy.attempts`). A
  request that may already have reached the server (the connection dropped after it was
  sent, or a 5xx) is retried only when it is idempotent: GET and DELETE, and POSTs that
  carry an `Idempotency-Key` (or that overwrite, as uploads do).

The API key goes to the API only: never to another host, and never to a signed or presigned
URL (those carry their own authorization in the query).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from saliency_client.errors import ApiError, ConnectionFailed

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
RATE_LIMITED = 429
SIGNATURE_PARAMS = frozenset({"sig", "X-Amz-Signature", "Signature"})
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all for connection trouble and 5xx, waiting `base * 2**n` seconds
    (capped at `cap`, with jitter) between; answers with `Retry-After` (429, 503) are retried
    after the time asked for, as long as the total wait stays within `max_wait` seconds."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    max_wait: float = 120.0

    def backoff(self, attempt: int) -> float:
        return min(self.cap, self.base * 2**attempt) * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class Request:
    """What to send: an API path (or an absolute URL), its query and body, extra headers, and
    whether it may be sent again once it may have arrived (None: by method)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    files: list[Any] | None = None
    headers: dict[str, str] | None = None
    idempotent: bool | None = None

    @property
    def may_repeat(self) -> bool:
        if self.idempotent is None:
            return self.method in ("GET", "HEAD", "DELETE")
        return self.idempotent


@dataclass(frozen=True)
class Outgoing:
    """One attempt as the transport sends it: `options` are httpx's request arguments."""

    method: str
    url: str
    headers: dict[str, str]
    options: dict[str, Any]


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdecimal():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Resolve the base URL and key from arguments, then `SALIENCY_URL`/`SALIENCY_API_KEY`."""
    url = base_url or os.environ.get("SALIENCY_URL") or DEFAULT_URL
    return url.rstrip("/"), api_key or os.environ.get("SALIENCY_API_KEY") or None


def api_error(response: httpx.Response) -> ApiError:
    """The `ApiError` of a non-2xx answer, with the API's code and message."""
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        err = response.json().get("error") or {}
        code, message = err.get("code") or code, err.get("message") or message
    except (ValueError, AttributeError):
        text = response.text.strip()
        if text:
            message = text.splitlines()[0][:200]
    return ApiError(response.status_code, code, message)


def raise_for_error(response: httpx.Response) -> None:
    if not response.is_success:
        raise api_error(response)


def is_signed(url: str) -> bool:
    """True for a presigned storage URL or one the API signed: it needs no API key."""
    return bool(SIGNATURE_PARAMS & set(parse_qs(urlsplit(url).query)))


def _is_unsent(exc: httpx.TransportError) -> bool:
    """True when the request never reached the server, so any method may be retried."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


class Endpoint:
    """The API's base URL and key: where a path goes, and which URLs get the key."""

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        self.base_url, self.api_key = settings(base_url, api_key)
        self._origin = urlsplit(self.base_url)[:2]

    def url(self, path_or_url: str) -> str:
        """An absolute URL: API paths and relative artifact URLs resolve against the base."""
        if "://" in path_or_url:
            return path_or_url
        return urljoin(self.base_url + "/", path_or_url.lstrip("/"))

    def headers(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        out = dict(extra or {})
        if self.api_key and urlsplit(url)[:2] == self._origin and not is_signed(url):
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


class _Attempts:
    """The retry bookkeeping of one URL: backoff attempts and the Retry-After budget."""

    def __init__(self, policy: RetryPolicy, url: str, idempotent: bool) -> None:
        self.policy, self.url, self.idempotent = policy, url, idempotent
        self.attempt = 0
        self.waited = 0.0

    def settle(self, exc: Exception | None, response: httpx.Response | None) -> float | None:
        """None when `response` is the answer; else the seconds to wait before retrying.
        Raises ApiError or ConnectionFailed when it may not be retried (any more)."""
        if exc is None and response.status_code not in RETRY_STATUSES | {RATE_LIMITED}:
            if not response.is_redirect:
                raise_for_error(response)
            return None
        status = None if exc is not None else response.status_code
        if status == RATE_LIMITED:
            may_repeat = True  # refused before any work was done
        else:
            may_repeat = self.idempotent or (exc is not None and _is_unsent(exc))
        asked = None if response is None else retry_after(response)
        if may_repeat and asked is not None:
            delay = asked * (1 + random.random() / 10)  # jitter: clients do not come back as one
            if self.waited + delay <= self.policy.max_wait:
                self.waited += delay
                return delay
        elif may_repeat and self.attempt + 1 < self.policy.attempts:
            delay = self.policy.backoff(self.attempt)
            self.attempt += 1
            return delay
        if exc is not None:
            raise ConnectionFailed(f"cannot reach {self.url}: {exc}") from exc
        raise api_error(response)


class Exchange:
    """The life of one request: send `outgoing`, then `settle` each outcome, until it
    answers None (the last response is the answer) or raises the SDK's error."""

    def __init__(self, endpoint: Endpoint, policy: RetryPolicy, request: Request) -> None:
        self.endpoint, self.policy = endpoint, policy
        self.method, self.url = request.method, endpoint.url(request.path)
        self.extra = request.headers
        self.options = {"params": request.params, "json": request.json,
                        "data": request.data, "files": request.files}
        self.idempotent = request.may_repeat
        self.hops = 0
        self._attempts = _Attempts(policy, self.url, self.idempotent)

    @property
    def outgoing(self) -> Outgoing:
        """What to send now."""
        return Outgoing(self.method, self.url, self.endpoint.headers(self.url, self.extra),
                        self.options)

    def settle(self, exc: Exception | None, response: httpx.Response | None) -> float | None:
        """None when `response` is the answer; else the seconds to wait before sending
        `outgoing` again (0 to follow a redirect at once). Raises ApiError or
        ConnectionFailed when the request may not be retried (any more)."""
        delay = self._attempts.settle(exc, response)
        if delay is not None or not response.is_redirect:
            return delay
        if self.hops >= MAX_REDIRECTS:
            raise ApiError(response.status_code, "too_many_redirects", f"{self.url} redirects on")
        self.url = urljoin(self.url, response.headers["Location"])
        self.method, self.options = "GET", {}  # the Location carries its own query
        self.hops += 1
        self._attempts = _Attempts(self.policy, self.url, self.idempotent)
        return 0.0
