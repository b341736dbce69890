"""HTTP transport: base URL, auth, retries with backoff, and the API's error shape.

Retries cover connection trouble and 5xx answers only. A request that may already have
reached the server (the connection dropped after it was sent) is retried only when it is
idempotent: GET and DELETE, and POSTs that carry an `Idempotency-Key`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from saliency_client.errors import ApiError, ConnectionFailed

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; waits `base * 2**n` seconds (capped, with jitter) between."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            return min(float(response.headers["Retry-After"]), self.cap)
        return min(self.cap, self.base * 2**attempt) * (0.5 + random.random() / 2)


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Resolve the base URL and key from arguments, then `SALIENCY_URL`/`SALIENCY_API_KEY`."""
    url = base_url or os.environ.get("SALIENCY_URL") or DEFAULT_URL
    return url.rstrip("/"), api_key or os.environ.get("SALIENCY_API_KEY") or None


def raise_for_error(response: httpx.Response) -> None:
    """Turn a non-2xx answer into `ApiError` with the API's code and message."""
    if response.is_success:
        return
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        err = response.json().get("error") or {}
        code, message = err.get("code") or code, err.get("message") or message
    except (ValueError, AttributeError):
        text = response.text.strip()
        if text:
            message = text.splitlines()[0][:200]
    raise ApiError(response.status_code, code, message)


def _is_unsent(exc: httpx.TransportError) -> bool:
    """True when the request never reached the server, so any method may be retried."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


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
        # The key goes to the API only, never to a presigned storage URL on another host.
        out = dict(extra or {})
        if self.api_key and urlsplit(url)[:2] == self._origin:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out

    def _should_retry(self, attempt: int, idempotent: bool, exc: Exception | None,
                      response: httpx.Response | None) -> bool:
        if attempt + 1 >= self.retry.attempts:
            return False
        if exc is not None:
            return idempotent or _is_unsent(exc)
        return response is not None and response.status_code in RETRY_STATUSES and idempotent

    def _settle(self, url: str, attempt: int, idempotent: bool, exc: Exception | None,
                response: httpx.Response | None) -> httpx.Response | None:
        """The response to answer with, None to retry, or the error to raise (raised here)."""
        if exc is None and response.status_code not in RETRY_STATUSES:
            raise_for_error(response)
            return response
        if self._should_retry(attempt, idempotent, exc, response):
            return None
        if exc is not None:
            raise ConnectionFailed(f"cannot reach {url}: {exc}") from exc
        raise_for_error(response)
        return response


class Transport(_Base):
    """Blocking transport over one `httpx.Client` (connection pooling, keep-alive)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.Client | None = None) -> None:
        super().__init__(base_url, api_key, timeout, retry or RetryPolicy())
        self._http = http or httpx.Client(timeout=timeout)  # `http`: custom TLS, proxies, tests

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, idempotent: bool | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """Send with retries; answer the 2xx response or raise ApiError/ConnectionFailed."""
        url = self.url(path)
        idempotent = method in ("GET", "HEAD", "DELETE") if idempotent is None else idempotent
        attempt = 0
        while True:
            response, error = None, None
            try:
                response = self._http.request(method, url, headers=self.headers(url, headers),
                                              **kwargs)
            except httpx.TransportError as exc:
                error = exc
            settled = self._settle(url, attempt, idempotent, error, response)
            if settled is not None:
                return settled
            time.sleep(self.retry.delay(attempt, response))
            attempt += 1

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

    async def request(self, method: str, path: str, *, idempotent: bool | None = None,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        url = self.url(path)
        idempotent = method in ("GET", "HEAD", "DELETE") if idempotent is None else idempotent
        attempt = 0
        while True:
            response, error = None, None
            try:
                response = await self._http.request(
                    method, url, headers=self.headers(url, headers), **kwargs
                )
            except httpx.TransportError as exc:
                error = exc
            settled = self._settle(url, attempt, idempotent, error, response)
            if settled is not None:
                return settled
            await asyncio.sleep(self.retry.delay(attempt, response))
            attempt += 1

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()
