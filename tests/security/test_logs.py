"""Secrets never reach a log: a stack run with API keys, a signing key and a webhook master key
serves keyed and unkeyed requests, signed URLs and a signed webhook delivery; then no log file
of that stack holds any of those values, nor a tenant's derived webhook secret."""

from __future__ import annotations

import json

import requests
from badinput.cases import clean_png
from waiting import job_final, wait_until

from security.conftest import LOGS, SECRETS, Receiver


def test_no_log_holds_a_secret(sec, sec_model, receiver):
    from standardwebhooks import Webhook

    from shared.webhooks import tenant_secret

    alice, bob = sec.session("alice"), sec.session("bob")
    secret = alice.get(f"{sec.url}/v1/webhooks/secret", timeout=10).json()["secret"]
    assert secret == tenant_secret(SECRETS["webhook_master_key"], "alice")
    assert requests.get(f"{sec.url}/v1/models", timeout=10,
                        headers={"Authorization": "Bearer wrong-key"}).status_code == 401
    assert bob.get(f"{sec.url}/v1/models", timeout=10).status_code == 200
    spec = {"model": sec_model, "notify": {"url": receiver, "events": ["succeeded"]}}
    response = alice.post(f"{sec.url}/v1/jobs", timeout=30, files=[
        ("spec", (None, json.dumps(spec))), ("images", ("a.png", clean_png()))])
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    job_final(alice, sec.url, job_id)
    (item,) = alice.get(f"{sec.url}/v1/jobs/{job_id}/items", timeout=10).json()["items"]
    assert requests.get(item["outputs"][0]["png"], timeout=30).status_code == 200
    wait_until(f"job {job_id}'s webhook delivered", lambda: any(
        job_id.encode() in body for _, body in Receiver.deliveries), timeout=60, every=0.2)
    headers, body = next((h, b) for h, b in Receiver.deliveries if job_id.encode() in b)
    Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    wait_until(f"job {job_id} in the worker's log", lambda: job_id in (
        LOGS / "worker.log").read_text(errors="replace"), timeout=30)

    values = {**SECRETS, "alice webhook secret": secret,
              "bob webhook secret": tenant_secret(SECRETS["webhook_master_key"], "bob")}
    values["alice webhook secret (base64)"] = secret.removeprefix("whsec_")
    logs = sorted(p for p in LOGS.rglob("*") if p.is_file())
    assert {p.name for p in logs} >= {"api.log", "worker.log", "beat.log"}
    text = {p: p.read_text(errors="replace") for p in logs}
    assert job_id in text[LOGS / "worker.log"] and "POST /v1/jobs" in text[LOGS / "api.log"]
    leaks = [f"{name} in {path.name}" for path, content in text.items()
             for name, value in values.items() if value in content]
    assert leaks == []
