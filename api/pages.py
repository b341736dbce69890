"""Web pages (filled in by the pages issue)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages blueprint; nothing yet."""
