"""Against an API allowing one read per second: the SDK (sync and async) and the CLI wait as
`Retry-After` says, within the policy's bound; and the tenant's webhook secret verifies a
delivery the service signs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
from saliency_client import ApiError, AsyncClient, Client, RetryPolicy, cli, webhooks


def _recording(statuses: list[int], asked: list[float] | None = None) -> dict:
    def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)
        if asked is not None and response.status_code == 429:
            asked.append(float(response.headers["Retry-After"]))

    return {"response": [record]}


def test_reads_beyond_the_rate_wait_as_retry_after_says(limited_api, monkeypatch):
    statuses: list[int] = []
    asked: list[float] = []
    slept: list[float] = []
    sleep, main = time.sleep, threading.current_thread()

    def recorded_sleep(seconds: float) -> None:
        if threading.current_thread() is main:  # the client's own waits, not other threads'
            slept.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", recorded_sleep)
    http = httpx.Client(event_hooks=_recording(statuses, asked))
    with Client(limited_api.url, api_key=limited_api.key, http=http) as client:
        answers = [client.roots() for _ in range(3)]
    assert all(a.storage.endswith(f"/t/{limited_api.tenant}/") for a in answers)
    assert 429 in statuses and statuses.count(200) == 3
    # each refusal was followed by a wait of at least what its Retry-After asked for
    assert len(slept) == len(asked) and all(s >= a for s, a in zip(slept, asked, strict=True))


def test_the_wait_is_bounded_by_the_policy(limited_api):
    with Client(limited_api.url, api_key=limited_api.key,
                retry=RetryPolicy(max_wait=0.5)) as client:
        with pytest.raises(ApiError) as info:
            for _ in range(3):
                client.methods()
    assert info.value.status == 429 and info.value.code == "rate_limited"


def test_the_async_client_waits_too(limited_api):
    statuses: list[int] = []

    async def main():
        http = httpx.AsyncClient(event_hooks={"response": [_async_record(statuses)]})
        async with AsyncClient(limited_api.url, api_key=limited_api.key, http=http) as client:
            return await asyncio.gather(*(client.methods() for _ in range(3)))

    answers = asyncio.run(main())
    assert all("gradient" in [m.name for m in methods] for methods in answers)
    assert 429 in statuses and statuses.count(200) == 3


def _async_record(statuses: list[int]):
    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    return record


def test_the_cli_waits_too(limited_api, capsys):
    argv = ["--url", limited_api.url, "--api-key", limited_api.key, "methods", "--json"]
    assert [cli.main(argv) for _ in range(3)] == [0, 0, 0]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 3
    assert all("gradient" in [m["name"] for m in methods] for methods in printed)


def test_the_tenant_secret_verifies_a_delivery_the_service_signs(limited_api):
    from shared.webhooks import payload, signed_headers, tenant_secret

    with Client(limited_api.url, api_key=limited_api.key) as client:
        secret = client.webhook_secret()
    assert secret == tenant_secret(limited_api.webhook_master_key, limited_api.tenant)
    when = datetime.now(UTC)
    body = payload("succeeded", {"id": "j", "status": "succeeded"}, when)
    headers = signed_headers(secret, "msg_1", body, when)
    assert webhooks.verify(body.encode(), headers, secret)["data"]["status"] == "succeeded"
