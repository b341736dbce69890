"""API keys: `Authorization: Bearer <key>` on every `/v1` route when keys are configured.

Keys come from `SALIENCY_API_KEYS` and/or `SALIENCY_API_KEYS_FILE` (one entry per line, `#`
comments), each entry `key:tenant[:admin]`. With no keys configured every request is tenant
`default` — with the admin role on loopback (the embedded mode), without it elsewhere — and
the API refuses to start on a non-loopback address without keys unless
`SALIENCY_ALLOW_ANONYMOUS=1` says that is meant. A file URL the API signed
(`api.signing`) needs no key: its signature names the one object it opens.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, g, request

from shared.errors import ForbiddenError, UnauthorizedError
from shared.settings import Settings, SettingsError

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DEFAULT_TENANT = "default"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Routes whose URLs the API signs (`api.signing`); a valid signature stands in for a key.
SIGNED_ROUTES = re.compile(r"^/v1/jobs/[0-9a-f]{32}/(files|maps|report/files)/")


@dataclass(frozen=True)
class Principal:
    tenant: str
    admin: bool


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(settings: Settings) -> dict[str, Principal]:
    """Map the SHA-256 of each key to its principal; malformed entries fail at start."""
    entries = list(settings.api_keys)
    if settings.api_keys_file:
        for line in Path(settings.api_keys_file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entries.append(line)
    keys = {}
    for entry in entries:
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or (len(parts) == 3 and parts[2] != "admin"):
            raise SettingsError("an API key entry must be key:tenant or key:tenant:admin")
        if not TENANT_RE.match(parts[1]):
            raise SettingsError(f"tenant {parts[1]!r} must match {TENANT_RE.pattern}")
        keys[_digest(parts[0])] = Principal(parts[1], len(parts) == 3)
    return keys


def check_exposure(settings: Settings, keys: dict[str, Principal]) -> None:
    """Refuse to serve beyond loopback unprotected: without API keys (unless anonymous access
    is explicitly allowed), or without the key that signs file URLs; one error names both."""
    if settings.host in LOOPBACK or settings.allow_anonymous:
        return
    missing = []
    if not keys:
        missing.append("API keys: set SALIENCY_API_KEYS (or SALIENCY_API_KEYS_FILE), or "
                       "SALIENCY_ALLOW_ANONYMOUS=1 if anonymous access is meant")
    if not settings.signing_key:
        missing.append("SALIENCY_SIGNING_KEY (it signs the URLs of the files the API serves)")
    if missing:
        raise SettingsError(f"the API would serve {settings.host} without " +
                            " and without ".join(missing))


def require_admin(what: str) -> None:
    if not g.admin:
        raise ForbiddenError(f"{what} needs an API key with the admin role")


def init_app(app: Flask) -> None:
    svc = app.extensions["saliency"]
    keys = load_keys(svc.settings)
    check_exposure(svc.settings, keys)

    @app.before_request
    def authenticate() -> None:
        g.signed = False
        if not request.path.startswith("/v1/"):
            return
        if SIGNED_ROUTES.match(request.path) and svc.signer.valid(
                request.path, request.args.get("expires"), request.args.get("sig")):
            g.tenant, g.admin, g.signed = None, False, True
            return
        if not keys:
            g.tenant, g.admin = DEFAULT_TENANT, svc.settings.host in LOOPBACK
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        principal = keys.get(_digest(token.strip())) if scheme.lower() == "bearer" else None
        if principal is None:
            raise UnauthorizedError("a valid API key is required: Authorization: Bearer <key>")
        g.tenant, g.admin = principal.tenant, principal.admin
