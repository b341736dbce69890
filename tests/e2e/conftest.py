"""Fixtures of the end-to-end suite: HTTP sessions of the two tenants of `stack`."""

from __future__ import annotations

import pytest


@pytest.fixture
def alice(stack):
    return stack.session()


@pytest.fixture
def bob(stack):
    return stack.session(stack.api_keys["bob"])


@pytest.fixture(scope="session")
def confounder_demo(tmp_path_factory):
    """The planted-confounder demo at 32 px (seed 0) as `python -m demo.confounder make`
    writes it: pictures, manifests, and the model trained once per session on one torch
    thread (about 20-40 s). tests/worker/audit/ trains the same model; from tests/conftest.py
    this fixture would serve both."""
    from demo.confounder.build import build

    return build(tmp_path_factory.mktemp("confounder"), seed=0, size=32)
