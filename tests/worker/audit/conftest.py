"""Fixtures of the audit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def audit_on_one_thread(one_torch_thread):
    """Every audit test runs on one torch thread (`one_torch_thread`)."""
