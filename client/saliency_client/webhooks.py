"""Verifying the service's completion webhooks (Standard Webhooks), with the standard library.

    from saliency_client import webhooks
    secret = client.webhook_secret()                  # whsec_…, once
    event = webhooks.verify(request.body, request.headers, secret)
    if event["type"] == "job.succeeded": ...

A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
(space-separated `v1,<base64>` entries); the signature is the HMAC-SHA256, keyed with the
base64-decoded secret, of `"{id}.{timestamp}.{body}"`. Retries of one event keep its id, so
a receiver can drop duplicates by `webhook-id`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from saliency_client.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the webhook secret is not whsec_<base64>") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str | bytes, message_id: str, timestamp: int, body: str | bytes) -> str:
    """The `v1,<base64>` signature of one delivery."""
    data = body if isinstance(body, bytes) else body.encode()
    mac = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + data, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(body: str | bytes, headers: Mapping[str, str], secret: str | bytes, *,
           tolerance_s: float = TOLERANCE_S, now: float | None = None) -> Any:
    """The delivery's parsed JSON body once its signature and timestamp verify; raises
    `WebhookVerificationError` otherwise. `body` must be the raw bytes as received."""
    lower = {k.lower(): v for k, v in headers.items()}
    message_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (message_id and stamp and signatures):
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header")
    if not (stamp.isascii() and stamp.isdecimal()):  # `int` would take " 1", "1_0", "١"
        raise WebhookVerificationError(f"webhook-timestamp {stamp[:40]!r} is not an integer")
    timestamp = int(stamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {now - timestamp:+.0f} s from now, beyond the tolerance "
            f"of {tolerance_s:g} s (a replay, or a clock out of step)")
    expected = base64.b64decode(sign(secret, message_id, timestamp, body)[3:])
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1" and hmac.compare_digest(given, expected):
            return json.loads(body)
    raise WebhookVerificationError("no webhook-signature matches the secret")
