"""Signed completion webhooks (Standard Webhooks): the `notify` spec, its SSRF rules, each
tenant's secret, the payload and its signature.

A job may name `"notify": {"url": ..., "events": ["succeeded", "failed", "cancelled"]}`.
The URL must be `http(s)://` and its host must resolve only to public addresses — private,
loopback, link-local, shared (100.64.0.0/10), multicast and reserved ones are refused —
unless its host and port are in `SALIENCY_WEBHOOK_ALLOWED_HOSTS` (an entry `host` allows the
scheme's default port only, `host:port` that port only); the rule is applied at submission
and again, on the address actually connected to, at each delivery. Each tenant's signing
secret is derived from `SALIENCY_WEBHOOK_MASTER_KEY` (`GET /v1/webhooks/secret` tells a tenant
its own).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse, urlsplit

from shared.errors import SpecError
from shared.settings import Settings
from shared.spec.inputs import parse_uri

EVENTS = ("succeeded", "failed", "cancelled")
DEFAULT_PORTS = {"http": 80, "https": 443}
SECRET_PREFIX = "whsec_"


def tenant_secret(master_key: str, tenant: str) -> str:
    """The tenant's signing secret, `whsec_<base64>` as Standard Webhooks writes it."""
    raw = hmac.new(master_key.encode(), f"webhooks:{tenant}".encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(raw).decode()


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # `is_global` also excludes the shared address space 100.64.0.0/10 (carrier-grade NAT,
    # some clouds' metadata services), which `is_private` does not.
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def allowed(host: str, port: int, scheme: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Whether `SALIENCY_WEBHOOK_ALLOWED_HOSTS` lets a webhook reach `host` on `port`: an
    entry `host` allows the scheme's default port, `host:port` that port."""
    for entry in allowed_hosts:
        named = urlsplit(f"//{entry}")  # the settings checked each entry's form
        if named.hostname == host.lower() and (named.port or DEFAULT_PORTS[scheme]) == port:
            return True
    return False


def resolve_allowed(url: str, allowed_hosts: tuple[str, ...], field: str = "notify.url",
                    resolve=socket.getaddrinfo) -> tuple[str, int, tuple[str, ...]]:
    """(host, port, the addresses to connect to, in order) for a webhook URL, or a
    `SpecError` (SSRF rules)."""
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        raise SpecError(field, "must be an http:// or https:// URL")
    if parsed.username or parsed.password:
        raise SpecError(field, "must not carry credentials")
    host = parsed.hostname
    try:
        port = parsed.port if parsed.port is not None else DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise SpecError(field, "has a port that is not a number from 1 to 65535")
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise SpecError(field, f"host {host!r} does not resolve ({e})") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise SpecError(field, f"host {host!r} does not resolve")
    if not allowed(host, port, parsed.scheme, allowed_hosts) and not all(
            _public(a) for a in addresses):
        raise SpecError(field, f"host {host!r} (port {port}) is a private, loopback or "
                               "link-local address; only public hosts are allowed, or the "
                               "host:port entries of SALIENCY_WEBHOOK_ALLOWED_HOSTS")
    return host, port, tuple(dict.fromkeys(addresses))


def parse_notify(raw: Any, settings: Settings) -> dict[str, Any]:
    """Validate a job's `notify`; the URL passes the SSRF rules now."""
    if not isinstance(raw, dict) or set(raw) - {"url", "events"} or "url" not in raw:
        raise SpecError("notify", 'must be {"url": ..., "events": [...]}')
    if not settings.webhook_master_key:
        raise SpecError("notify", "webhooks are not enabled on this deployment "
                                  "(SALIENCY_WEBHOOK_MASTER_KEY is unset)")
    url = parse_uri(raw["url"], "notify.url")
    resolve_allowed(url, settings.webhook_allowed_hosts)
    events = raw.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
        raise SpecError("notify.events", f"must be a non-empty subset of {list(EVENTS)}")
    return {"url": url, "events": list(dict.fromkeys(events))}


def payload(event: str, job: dict[str, Any], when: datetime | None = None) -> str:
    """The delivery body: `{"type": "job.<event>", "timestamp", "data": <the job>}`."""
    when = when or datetime.now(UTC)
    return json.dumps({"type": f"job.{event}",
                       "timestamp": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
                       "data": job}, separators=(",", ":"))


def signed_headers(secret: str, message_id: str, body: str, when: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery (the same id on every retry)."""
    from standardwebhooks import Webhook

    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, when, body),
        "content-type": "application/json",
    }
