"""HTTP transport: base URL, auth, retries with backoff, and the API's error shape.

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

import asyncio
import os
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
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


class _Attempts:
    """The retry bookkeeping of one request: backoff attempts and the Retry-After budget."""

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


class _Base:
    def __init__(
        self, base_url: str | None, api_key: str | None, timeout: float, retry: RetryPolicy
    ) -> None:
        self.base_url, self.api_key = settings(base_url, api_key)
        self.timeout = timeout
        self.retry = retry
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

    @staticmethod
    def _idempotent(method: str, idempotent: bool | None) -> bool:
        return method in ("GET", "HEAD", "DELETE") if idempotent is None else idempotent

    @staticmethod
    def _redirect(url: str, response: httpx.Response, hops: int) -> str:
        if hops >= MAX_REDIRECTS:
            raise ApiError(response.status_code, "too_many_redirects", f"{url} redirects on")
        return urljoin(url, response.headers["Location"])


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


class Transport(_Base):
    """Blocking transport over one `httpx.Client` (connection pooling, keep-alive)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.Client | None = None) -> None:
        super().__init__(base_url, api_key, timeout, retry or RetryPolicy())
        self._http = http or httpx.Client(timeout=timeout)  # `http`: custom TLS, proxies, tests

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, url: str, headers: dict[str, str] | None, sink: Path | None,
              kwargs: dict[str, Any]) -> httpx.Response:
        request = self._http.build_request(method, url, headers=self.headers(url, headers),
                                           **kwargs)
        response = self._http.send(request, stream=True)
        try:
            if sink is not None and response.is_success:
                try:
                    with _part(sink).open("wb") as f:
                        for chunk in response.iter_bytes():
                            f.write(chunk)
                except BaseException:
                    _part(sink).unlink(missing_ok=True)  # no half file left behind
                    raise
            else:
                response.read()
        finally:
            response.close()
        return response

    def request(self, method: str, path: str, *, idempotent: bool | None = None,
                headers: dict[str, str] | None = None, sink: Path | None = None,
                **kwargs: Any) -> httpx.Response:
        """Send with retries, following redirects; answer the 2xx response or raise
        ApiError/ConnectionFailed. With `sink`, the body is streamed into that file."""
        url = self.url(path)
        idempotent = self._idempotent(method, idempotent)
        hops = 0
        while True:
            attempts = _Attempts(self.retry, url, idempotent)
            while True:
                response, error = None, None
                try:
                    response = self._send(method, url, headers, sink, kwargs)
                except httpx.TransportError as exc:
                    error = exc
                delay = attempts.settle(error, response)
                if delay is None:
                    break
                time.sleep(delay)
            if not response.is_redirect:
                if sink is not None:
                    _part(sink).replace(sink)
                return response
            url, hops = self._redirect(url, response, hops), hops + 1
            method, kwargs = "GET", {}  # the Location carries its own query

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


class AsyncTransport(_Base):
    """The asyncio twin of `Transport`, over one `httpx.AsyncClient`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, api_key, timeout, retry or RetryPolicy())
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, url: str, headers: dict[str, str] | None,
                    sink: Path | None, kwargs: dict[str, Any]) -> httpx.Response:
        request = self._http.build_request(method, url, headers=self.headers(url, headers),
                                           **kwargs)
        response = await self._http.send(request, stream=True)
        try:
            if sink is not None and response.is_success:
                try:
                    with _part(sink).open("wb") as f:
                        async for chunk in response.aiter_bytes():
                            f.write(chunk)
                except BaseException:
                    _part(sink).unlink(missing_ok=True)
                    raise
            else:
                await response.aread()
        finally:
            await response.aclose()
        return response

    async def request(self, method: str, path: str, *, idempotent: bool | None = None,
                      headers: dict[str, str] | None = None, sink: Path | None = None,
                      **kwargs: Any) -> httpx.Response:
        """See `Transport.request`."""
        url = self.url(path)
        idempotent = self._idempotent(method, idempotent)
        hops = 0
        while True:
            attempts = _Attempts(self.retry, url, idempotent)
            while True:
                response, error = None, None
                try:
                    response = await self._send(method, url, headers, sink, kwargs)
                except httpx.TransportError as exc:
                    error = exc
                delay = attempts.settle(error, response)
                if delay is None:
                    break
                await asyncio.sleep(delay)
            if not response.is_redirect:
                if sink is not None:
                    _part(sink).replace(sink)
                return response
            url, hops = self._redirect(url, response, hops), hops + 1
            method, kwargs = "GET", {}

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()
