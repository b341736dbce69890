"""Retries: what is retried (connection trouble, 5xx, 429 and 503 with Retry-After, within a
bounded wait), what is not, redirects, streaming into a file, and where the key goes."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import httpx
import pytest
from saliency_client import transport as transport_module
from saliency_client.errors import ApiError, ConnectionFailed
from saliency_client.exchange import RetryPolicy, retry_after
from saliency_client.transport import AsyncTransport, Transport

FAST = RetryPolicy(attempts=4, base=0.001, cap=0.002)


@pytest.fixture
def slept(monkeypatch):
    """The delays the transports sleep, recorded instead of slept."""
    delays: list[float] = []

    async def asleep(delay):
        delays.append(delay)

    monkeypatch.setattr(transport_module.time, "sleep", delays.append)
    monkeypatch.setattr(transport_module.asyncio, "sleep", asleep)
    return delays


def limited(seconds: str = "2") -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": seconds}, json={
        "error": {"code": "rate_limited", "message": "rate limit: retry in 2 s"}})


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


def test_the_key_goes_to_the_api_only_never_to_signed_urls():
    handler, calls = scripted(httpx.Response(200))
    t = transport(handler, api_key="secret")
    t.request("GET", "/v1/models")
    t.request("GET", "https://bucket.s3.test/out.png?X-Amz-Signature=1")
    t.request("GET", "http://api.test/v1/jobs/j/maps/0/0.png?expires=9&sig=ab")
    t.request("GET", "http://other.test/v1/jobs/j")
    t.request("GET", "http://api.test/v1/jobs/j/report")
    assert [c.headers.get("Authorization") for c in calls] == [
        "Bearer secret", None, None, None, "Bearer secret"]


def test_429_waits_as_asked_even_for_a_post_and_keeps_the_idempotency_key(slept):
    handler, calls = scripted(limited("2"), limited("1"), httpx.Response(202, json={"id": "j"}))
    answer = transport(handler).json("POST", "/v1/jobs", idempotent=True,
                                     headers={"Idempotency-Key": "k1"})
    assert answer == {"id": "j"}
    assert [c.headers["Idempotency-Key"] for c in calls] == ["k1", "k1", "k1"]
    assert 2 <= slept[0] <= 2.2 and 1 <= slept[1] <= 1.1  # Retry-After, plus some jitter
    handler, calls = scripted(limited("0"), httpx.Response(201, json={}))
    transport(handler).request("POST", "/v1/models")  # refused before any work: safe to resend
    assert len(calls) == 2


def test_the_total_wait_is_bounded_then_the_429_is_raised(slept):
    handler, calls = scripted(limited("25"))
    policy = RetryPolicy(attempts=2, base=0.001, cap=0.002, max_wait=60)
    t = Transport("http://api.test", retry=policy,
                  http=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(ApiError) as info:
        t.request("GET", "/v1/jobs/j")
    assert info.value.status == 429 and info.value.code == "rate_limited"
    assert len(calls) == 3 and 50 <= sum(slept) <= 60  # a third wait would pass 60 s


def test_503_with_retry_after_is_retried_for_idempotent_requests_only(slept):
    unavailable = httpx.Response(503, headers={"Retry-After": "5"},
                                 json={"error": {"code": "unavailable", "message": "redis"}})
    handler, calls = scripted(unavailable, httpx.Response(200, json={}))
    transport(handler).request("GET", "/v1/jobs/j")
    assert len(calls) == 2 and 5 <= slept[0] <= 5.5
    handler, calls = scripted(unavailable, httpx.Response(201, json={}))
    with pytest.raises(ApiError, match="unavailable"):
        transport(handler).request("POST", "/v1/models")
    assert len(calls) == 1


def test_retry_after_as_an_http_date():
    later = httpx.Response(429, headers={"Retry-After": formatdate(transport_module.time.time()
                                                                   + 30, usegmt=True)})
    assert 28 <= retry_after(later) <= 30
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None


def test_a_redirect_to_a_presigned_url_is_followed_without_the_key(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            return httpx.Response(302, headers={
                "Location": "http://s3.test/b/results.parquet?X-Amz-Signature=s"})
        assert "Authorization" not in request.headers
        return httpx.Response(200, content=b"PAR1 rows PAR1")

    t = transport(handler, api_key="secret")
    t.request("GET", "/v1/jobs/j/results", params={"format": "parquet"},
              sink=tmp_path / "results.parquet")
    assert (tmp_path / "results.parquet").read_bytes() == b"PAR1 rows PAR1"
    assert list(tmp_path.iterdir()) == [tmp_path / "results.parquet"]  # no .part left


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


def test_async_transport_honours_429_and_follows_redirects(slept, tmp_path):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return limited("1")
        if request.url.path == "/v1/jobs/j/report":
            return httpx.Response(307, headers={"Location": "/v1/jobs/j/files/report.json"
                                                            "?expires=9&sig=ab"})
        return httpx.Response(200, json={"kind": "attribution"})

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        t = AsyncTransport("http://api.test", api_key="secret", retry=FAST, http=http)
        try:
            await t.request("GET", "/v1/jobs/j/report", sink=tmp_path / "report.json")
        finally:
            await t.close()

    asyncio.run(main())
    assert 1 <= slept[0] <= 1.1
    assert [c.headers.get("Authorization") for c in calls] == ["Bearer secret"] * 2 + [None]
    assert (tmp_path / "report.json").read_text() == '{"kind":"attribution"}'


class _BrokenBody(httpx.SyncByteStream):
    """A body whose connection drops after its first chunk."""

    def __iter__(self):
        yield b"half of "
        raise httpx.ReadError("connection reset mid-body")


def test_a_body_cut_off_mid_stream_is_fetched_again_whole(tmp_path):
    handler, calls = scripted(httpx.Response(200, stream=_BrokenBody()),
                              httpx.Response(200, content=b"the whole file"))
    transport(handler).request("GET", "/v1/jobs/j/results", sink=tmp_path / "rows.jsonl")
    assert len(calls) == 2
    assert (tmp_path / "rows.jsonl").read_bytes() == b"the whole file"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
