"""Against an API allowing one read per second: the SDK (sync and async) and the CLI wait as
`Retry-After` says, within the policy's bound; and the tenant's webhook secret verifies a
delivery the service signs."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from saliency_client import ApiError, AsyncClient, Client, RetryPolicy, cli, webhooks


def _recording(statuses: list[int]) -> dict:
    return {"response": [lambda response: statuses.append(response.status_code)]}


def test_reads_beyond_the_rate_wait_as_retry_after_says(limited_api):
    statuses: list[int] = []
    http = httpx.Client(event_hooks=_recording(statuses))
    with Client(limited_api.url, api_key=limited_api.key, http=http) as client:
        start = time.monotonic()
        answers = [client.roots() for _ in range(3)]
        elapsed = time.monotonic() - start
    assert all(a.storage.endswith(f"/t/{limited_api.tenant}/") for a in answers)
    assert 429 in statuses and statuses.count(200) == 3
    assert elapsed >= 1.5  # three reads at one per second (one may be left in the bucket)


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
