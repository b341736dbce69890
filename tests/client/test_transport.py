"""Retries: what is retried (connection trouble, 5xx), what is not, and the auth header."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from saliency_client.errors import ApiError, ConnectionFailed
from saliency_client.transport import AsyncTransport, RetryPolicy, Transport

FAST = RetryPolicy(attempts=4, base=0.001, cap=0.002)


def scripted(*answers):
    """A handler answering each request with the next of `answers` (an exception is raised)."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        answer = answers[min(len(calls), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, calls


def transport(handler, **kwargs):
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Transport("http://api.test", retry=FAST, http=http, **kwargs)


def test_5xx_and_dropped_connections_are_retried_for_idempotent_requests():
    handler, calls = scripted(
        httpx.Response(503), httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(200, json={"ok": True}))
    assert transport(handler).json("GET", "/v1/models") == {"ok": True}
    assert len(calls) == 3


def test_submit_keeps_its_idempotency_key_across_retries():
    handler, calls = scripted(httpx.ReadError("reset"), httpx.Response(202, json={"id": "j"}))
    t = transport(handler)
    t.request("POST", "/v1/jobs", idempotent=True, headers={"Idempotency-Key": "k1"})
    assert [c.headers["Idempotency-Key"] for c in calls] == ["k1", "k1"]


def test_a_post_without_a_key_is_not_resent_once_it_may_have_arrived():
    handler, calls = scripted(httpx.ReadError("reset"), httpx.Response(201, json={}))
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        transport(handler).request("POST", "/v1/models")
    assert len(calls) == 1


def test_a_post_is_retried_when_the_connection_never_opened():
    handler, calls = scripted(httpx.ConnectError("refused"), httpx.Response(201, json={}))
    transport(handler).request("POST", "/v1/models")
    assert len(calls) == 2


def test_4xx_is_not_retried_and_gives_up_after_attempts():
    handler, calls = scripted(httpx.Response(400, json={"error": {"code": "invalid_spec",
                                                                  "message": "target: bad"}}))
    with pytest.raises(ApiError, match="target: bad"):
        transport(handler).request("GET", "/v1/jobs/x")
    assert len(calls) == 1
    handler, calls = scripted(httpx.Response(500))
    with pytest.raises(ApiError) as info:
        transport(handler).request("GET", "/v1/jobs/x")
    assert info.value.status == 500 and len(calls) == FAST.attempts


def test_the_key_goes_to_the_api_only():
    handler, calls = scripted(httpx.Response(200))
    t = transport(handler, api_key="secret")
    t.request("GET", "/v1/models")
    t.request("GET", "https://bucket.s3.test/out.png?X-Amz-Signature=1")
    t.request("GET", "http://api.test/v1/jobs/j/files/a.png")
    assert [c.headers.get("Authorization") for c in calls] == [
        "Bearer secret", None, "Bearer secret"]


def test_async_transport_retries_the_same_way():
    handler, calls = scripted(httpx.Response(502), httpx.Response(200, json=[1]))

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        t = AsyncTransport("http://api.test", retry=FAST, http=http)
        try:
            return await t.json("GET", "/v1/methods")
        finally:
            await t.close()

    assert asyncio.run(main()) == [1]
    assert len(calls) == 2
