"""What the views share: settings, the stores, storage, the task sender, the URL signer."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import current_app, g

from api.signing import Signer, signing_key
from shared.settings import Settings
from shared.state.stores import Stores
from shared.taskqueue import make_sender


@dataclass
class Services(Stores):
    """The stores, the task sender and the URL signer."""

    sender: Celery
    signer: Signer

    @classmethod
    def create(cls, settings: Settings) -> Services:
        return cls(**Stores.open(settings), sender=make_sender(settings),
                   signer=Signer(signing_key(settings), settings.presign_expires_s))


def services() -> Services:
    return current_app.extensions["saliency"]


def tenant() -> str:
    """The tenant of the request's API key (`default` when no keys are configured)."""
    return g.tenant


def base_url() -> str:
    """Where clients reach this API: `SALIENCY_PUBLIC_URL`, else the configured bind address
    (never the request's `Host` header, which a client chooses)."""
    settings = services().settings
    if settings.public_url:
        return settings.public_url
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"
