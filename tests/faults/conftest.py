"""Fixtures of the fault suite: a fresh stack per case, inputs, and the figures each case
measured (printed, and written to `test-output/faults/<case>.json` for the operations
guide's table).

The slow cases are marked `chaos` and run with `make chaos`; the rest also run in `make test`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from e2e.helpers import image_bytes

from devstack import ROOT, free_port
from faults.stack import FaultStack, start_stack, webhook_env
from faults.tls import Tls, make_tls

FIGURES = ROOT / "test-output" / "faults"


@dataclass(frozen=True)
class Hooks:
    """Where the fast stack's webhooks may go: a receiver's port on 127.0.0.1, and an HTTPS
    receiver's on `localhost` with its throwaway CA (`tls.ca`, the stack's
    `SALIENCY_WEBHOOK_CA_FILE`)."""

    port: int
    tls_port: int
    tls: Tls


@pytest.fixture(scope="session")
def hooks(tmp_path_factory) -> Hooks:
    return Hooks(free_port(), free_port(), make_tls(tmp_path_factory.mktemp("tls"), "localhost"))


@pytest.fixture(scope="session")
def fast_stack(tiny_weights, hooks, tmp_path_factory) -> Iterator[FaultStack]:
    """The stack the fast cases share (they also run in `make test`): two supervised workers,
    local storage, webhooks to the `hooks` receivers only on a short retry schedule, the tiny
    model ready. Each case judges only its own job; a worker a case killed is started again
    meanwhile."""
    stack = start_stack("fast", tmp_path_factory.mktemp("fast-stack"),
                        extra=webhook_env(hooks.port, hooks.tls, hooks.tls_port))
    try:
        stack.register_model(tiny_weights)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def make_stack(request, tmp_path) -> Iterator:
    """`make_stack(**options)` starts a fresh stack for this case (see `start_stack`)."""
    stacks: list[FaultStack] = []

    def make(**options) -> FaultStack:
        name = request.node.name.replace("[", "-").replace("]", "")
        stack = start_stack(name, tmp_path / f"stack{len(stacks)}", **options)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def pngs():
    """`pngs(n)`: n small seeded PNGs as (name, bytes)."""

    def make(n: int, prefix: str = "img", size: int = 32) -> list[tuple[str, bytes]]:
        return [(f"{prefix}{i:04d}.png", image_bytes(1000 + i, size=size)) for i in range(n)]

    return make


@pytest.fixture
def figures(request):
    """`figures(**measured)`: print a case's figures and keep them for the docs."""

    def record(**measured) -> None:
        FIGURES.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("[", "-").replace("]", "")
        (FIGURES / f"{name}.json").write_text(json.dumps(measured, indent=1, default=str))
        print(f"\n{name}: {json.dumps(measured, default=str)}")

    return record
