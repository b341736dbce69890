"""The blocking and asyncio transports: they send what `exchange.Exchange` decides, stream
bodies into files, and sleep as it asks. Retries, redirects and errors: see `exchange`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx

from saliency_client.exchange import Endpoint, Exchange, Outgoing, Request, RetryPolicy
from saliency_client.protocol import Call

T = TypeVar("T")


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _landed(sink: Path | None, response: httpx.Response) -> httpx.Response:
    """The answer, once a streamed body has moved from its `.part` file into `sink`."""
    if sink is not None:
        _part(sink).replace(sink)
    return response


class Transport:
    """Blocking transport over one `httpx.Client` (connection pooling, keep-alive)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.Client | None = None) -> None:
        self.endpoint = Endpoint(base_url, api_key)
        self.base_url, self.retry = self.endpoint.base_url, retry or RetryPolicy()
        self._http = http or httpx.Client(timeout=timeout)  # `http`: custom TLS, proxies, tests

    def close(self) -> None:
        self._http.close()

    def _send(self, out: Outgoing, sink: Path | None) -> httpx.Response:
        request = self._http.build_request(out.method, out.url, headers=out.headers,
                                           **out.options)
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

    def send(self, request: Request, sink: Path | None = None) -> httpx.Response:
        """Send with retries, following redirects; answer the 2xx response or raise
        ApiError/ConnectionFailed. With `sink`, the body is streamed into that file."""
        exchange = Exchange(self.endpoint, self.retry, request)
        while True:
            response, error = None, None
            try:
                response = self._send(exchange.outgoing, sink)
            except httpx.TransportError as exc:
                error = exc
            delay = exchange.settle(error, response)
            if delay is None:
                return _landed(sink, response)
            if delay:
                time.sleep(delay)

    def call(self, call: Call[T]) -> T:
        """Send an API call's request and parse its answer."""
        return call.parse(self.send(call.request))

    def request(self, method: str, path: str, *, idempotent: bool | None = None,
                headers: dict[str, str] | None = None, sink: Path | None = None,
                **kwargs: Any) -> httpx.Response:
        """`send` a request given by parts (`params`, `json`, `data`, `files`)."""
        return self.send(Request(method, path, headers=headers, idempotent=idempotent,
                                 **kwargs), sink)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


class AsyncTransport:
    """The asyncio twin of `Transport`, over one `httpx.AsyncClient`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.endpoint = Endpoint(base_url, api_key)
        self.base_url, self.retry = self.endpoint.base_url, retry or RetryPolicy()
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, out: Outgoing, sink: Path | None) -> httpx.Response:
        request = self._http.build_request(out.method, out.url, headers=out.headers,
                                           **out.options)
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

    async def send(self, request: Request, sink: Path | None = None) -> httpx.Response:
        """See `Transport.send`."""
        exchange = Exchange(self.endpoint, self.retry, request)
        while True:
            response, error = None, None
            try:
                response = await self._send(exchange.outgoing, sink)
            except httpx.TransportError as exc:
                error = exc
            delay = exchange.settle(error, response)
            if delay is None:
                return _landed(sink, response)
            if delay:
                await asyncio.sleep(delay)

    async def call(self, call: Call[T]) -> T:
        """See `Transport.call`."""
        return call.parse(await self.send(call.request))

    async def request(self, method: str, path: str, *, idempotent: bool | None = None,
                      headers: dict[str, str] | None = None, sink: Path | None = None,
                      **kwargs: Any) -> httpx.Response:
        """See `Transport.request`."""
        return await self.send(Request(method, path, headers=headers, idempotent=idempotent,
                                       **kwargs), sink)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()
