"""Fixtures of the end-to-end suite: HTTP sessions of the two tenants of `stack`."""

from __future__ import annotations

import pytest


@pytest.fixture
def alice(stack):
    return stack.session()


@pytest.fixture
def bob(stack):
    return stack.session(stack.api_keys["bob"])
