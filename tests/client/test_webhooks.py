"""`saliency_client.webhooks.verify` against the `standardwebhooks` package's own signing (and
the service's, which uses it), and the package's verification of the SDK's signatures."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from saliency_client import WebhookVerificationError, webhooks
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"a tenant's thirty-two byte secret").decode()
BODY = '{"type":"job.succeeded","timestamp":"2025-01-01T00:00:00Z","data":{"id":"j"}}'


def delivery(secret: str = SECRET, body: str = BODY, when: datetime | None = None,
             message_id: str = "msg_1") -> dict[str, str]:
    """The headers a Standard Webhooks sender puts on one delivery."""
    when = when or datetime.now(UTC)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, when, body)}


def test_a_delivery_signed_by_standardwebhooks_verifies():
    event = webhooks.verify(BODY.encode(), delivery(), SECRET)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == "j"
    headers = {k.title(): v for k, v in delivery().items()}  # header names in any case
    assert webhooks.verify(BODY, headers, SECRET)["data"] == {"id": "j"}


def test_a_delivery_signed_by_the_service_verifies():
    from shared.webhooks import payload, signed_headers, tenant_secret

    secret = tenant_secret("master-key", "acme")
    when = datetime.now(UTC)
    body = payload("failed", {"id": "j2", "status": "failed"}, when)
    headers = signed_headers(secret, "msg_7", body, when)
    assert webhooks.verify(body.encode(), headers, secret)["type"] == "job.failed"


def test_standardwebhooks_verifies_the_sdks_signature():
    stamp = int(time.time())
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(stamp),
               "webhook-signature": webhooks.sign(SECRET, "msg_2", stamp, BODY)}
    assert Webhook(SECRET).verify(BODY, headers)["data"]["id"] == "j"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: ({**h}, BODY.replace('"j"', '"k"')), "no webhook-signature matches"),
        (lambda h: ({**h, "webhook-id": "msg_other"}, BODY), "no webhook-signature matches"),
        (lambda h: ({k: v for k, v in h.items() if k != "webhook-signature"}, BODY), "missing"),
        (lambda h: ({**h, "webhook-timestamp": "soon"}, BODY), "not an integer"),
        (lambda h: ({**h, "webhook-timestamp": _digits(h["webhook-timestamp"], "٠")}, BODY),
         "not an integer"),
        (lambda h: ({**h, "webhook-timestamp": " " + h["webhook-timestamp"]}, BODY),
         "not an integer"),
    ],
)
def test_a_changed_body_id_or_header_is_refused(change, message):
    headers, body = change(delivery())
    with pytest.raises(WebhookVerificationError, match=message):
        webhooks.verify(body, headers, SECRET)


def _digits(number: str, zero: str) -> str:
    """`number` written in the digits that start at `zero` (`"٠"`: Arabic-Indic)."""
    return "".join(chr(ord(zero) + int(d)) for d in number)


def test_another_tenants_secret_is_refused():
    other = "whsec_" + base64.b64encode(b"another tenant's secret bytes!!").decode()
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        webhooks.verify(BODY, delivery(other), SECRET)


def test_timestamps_beyond_five_minutes_are_refused():
    now = time.time()
    old = delivery(when=datetime.fromtimestamp(now - 301, UTC))
    new = delivery(when=datetime.fromtimestamp(now + 301, UTC))
    for headers in (old, new):
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            webhooks.verify(BODY, headers, SECRET, now=now)
    near = delivery(when=datetime.fromtimestamp(now - 299, UTC))
    assert webhooks.verify(BODY, near, SECRET, now=now)["type"] == "job.succeeded"


def test_any_of_several_signatures_may_match():
    headers = delivery()
    headers["webhook-signature"] = ("v1,bm90IGl0 v2,whatever v1a,x "
                                    + headers["webhook-signature"])
    assert webhooks.verify(BODY, headers, SECRET)["data"]["id"] == "j"
