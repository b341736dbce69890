"""Signed, expiring URLs for the files the API serves itself (maps cut from shards, files of
local storage): an HMAC of the path and the expiry in the query, so that `<img>` tags and
shared links work without an `Authorization` header, like presigned S3 URLs.

The key is `SALIENCY_SIGNING_KEY`; in the embedded mode, when it is unset, a random key is
made once and kept in `SALIENCY_DATA_DIR/signing.key`, shared by every API process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from shared.settings import Settings, SettingsError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def signing_key(settings: Settings) -> bytes:
    """The configured key, or (on loopback only) the embedded mode's key file."""
    if settings.signing_key:
        return settings.signing_key.encode()
    if settings.host not in LOOPBACK and not settings.allow_anonymous:
        raise SettingsError("SALIENCY_SIGNING_KEY is required when the API is served beyond "
                            "loopback (it signs the URLs of the files the API serves)")
    path = Path(settings.data_dir, "signing.key").absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


class Signer:
    """Signs and checks `path?expires=…&sig=…`."""

    def __init__(self, key: bytes, lifetime_s: int) -> None:
        self.key = key
        self.lifetime_s = lifetime_s

    def _mac(self, path: str, expires: int) -> str:
        return hmac.new(self.key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str) -> str:
        """`path` with an expiry and signature in its query."""
        expires = int(time.time()) + self.lifetime_s
        return f"{path}?expires={expires}&sig={self._mac(path, expires)}"

    def valid(self, path: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not expires.isascii() or not expires.isdecimal():
            return False
        if not (sig.isascii() and sig.isalnum()):  # hex, or no signature at all (the HMAC
            return False  # comparison refuses non-ASCII strings with a TypeError)
        if int(expires) < time.time():
            return False
        return hmac.compare_digest(self._mac(path, int(expires)), sig)
