"""One request's exchange as pure decisions, with no network and no sleep: what is retried
and after how long, where a redirect goes and with which headers, and what is raised."""

from __future__ import annotations

import httpx
import pytest
from saliency_client.errors import ApiError, ConnectionFailed
from saliency_client.exchange import MAX_REDIRECTS, Endpoint, Exchange, Request, RetryPolicy

ENDPOINT = Endpoint("http://api.test", "secret")
POLICY = RetryPolicy(attempts=3, base=1.0, cap=8.0, max_wait=10)


def exchange(method: str = "GET", **fields) -> Exchange:
    return Exchange(ENDPOINT, POLICY, Request(method, "/v1/jobs/j", **fields))


def test_a_2xx_is_the_answer_and_a_4xx_is_raised_at_once():
    assert exchange().settle(None, httpx.Response(200, json={})) is None
    with pytest.raises(ApiError) as info:
        exchange().settle(None, httpx.Response(404, json={
            "error": {"code": "not_found", "message": "no job 'j'"}}))
    assert (info.value.status, info.value.code, info.value.message) == (
        404, "not_found", "no job 'j'")


def test_5xx_backs_off_for_idempotent_requests_until_the_attempts_are_spent():
    ex = exchange()
    delays = [ex.settle(None, httpx.Response(502)) for _ in range(POLICY.attempts - 1)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0  # base * 2**n, jittered
    with pytest.raises(ApiError, match="http_502"):
        ex.settle(None, httpx.Response(502))
    with pytest.raises(ApiError, match="http_502"):
        exchange("POST").settle(None, httpx.Response(502))  # may have done the work


def test_a_post_is_retried_only_when_it_never_left():
    with pytest.raises(ConnectionFailed, match="cannot reach http://api.test/v1/jobs/j"):
        exchange("POST").settle(httpx.ReadError("reset"), None)
    assert exchange("POST").settle(httpx.ConnectError("refused"), None) > 0
    keyed = exchange("POST", headers={"Idempotency-Key": "k1"}, idempotent=True)
    assert keyed.settle(httpx.ReadError("reset"), None) > 0


def test_429_waits_as_asked_for_any_method_within_the_budget():
    ex = exchange("POST")
    limited = httpx.Response(429, headers={"Retry-After": "4"}, json={
        "error": {"code": "rate_limited", "message": "retry in 4 s"}})
    assert 4 <= ex.settle(None, limited) <= 4.4
    assert 4 <= ex.settle(None, limited) <= 4.4
    with pytest.raises(ApiError, match="rate_limited"):
        ex.settle(None, limited)  # a third wait would pass max_wait


def test_a_redirect_is_followed_as_a_get_with_the_key_only_where_it_belongs():
    ex = exchange("POST", json={"model": "m"}, headers={"Idempotency-Key": "k1"},
                  idempotent=True)
    assert ex.outgoing.headers == {"Idempotency-Key": "k1", "Authorization": "Bearer secret"}
    signed = "https://s3.test/b/results.parquet?X-Amz-Signature=s"
    assert ex.settle(None, httpx.Response(302, headers={"Location": signed})) == 0
    out = ex.outgoing
    assert (out.method, out.url, out.options) == ("GET", signed, {})
    assert out.headers == {"Idempotency-Key": "k1"}
    ex = exchange()
    for _ in range(MAX_REDIRECTS):
        assert ex.settle(None, httpx.Response(307, headers={"Location": "/v1/jobs/j"})) == 0
    with pytest.raises(ApiError, match="too_many_redirects"):
        ex.settle(None, httpx.Response(307, headers={"Location": "/v1/jobs/j"}))
