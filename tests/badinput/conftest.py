"""The bad-input suite's stack: an API of its own (tenant `mallory`, an admin, and `trudy`) on
the file backend's worker, with the default pixel limit (so that the extreme aspect ratios
reach their own check) and rate limits out of the way; the tiny model registered and ready.

At the end of the session the number of cases run in each family is printed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from waiting import model_ready

from badinput.helpers import (
    TALLY,
    BadStack,
    Reference,
    register_model,
    worker_processes,
)
from devstack import ROOT, start_api

LOGS = ROOT / "test-output" / "logs"

KEYS = {"mallory": "key-mallory-admin", "trudy": "key-trudy", "fuzz": "key-fuzz-admin"}
ENV = {
    "SALIENCY_API_KEYS": (f"{KEYS['mallory']}:mallory:admin,{KEYS['trudy']}:trudy,"
                          f"{KEYS['fuzz']}:fuzz:admin"),
    "SALIENCY_MAX_IMAGES_PER_JOB": "16",
    "SALIENCY_MAX_REQUEST_BYTES": "2000000",
    "SALIENCY_MAX_MODEL_BYTES": "60000000",
    "SALIENCY_MAX_URIS_PER_JOB": "100",
    "SALIENCY_RATE_SUBMIT": "10000",
    "SALIENCY_RATE_SUBMIT_BURST": "10000",
    "SALIENCY_RATE_READ": "10000",
}


def pytest_terminal_summary(terminalreporter) -> None:
    if not TALLY:
        return
    terminalreporter.write_sep("-", "bad-input cases by family")
    for family, n in sorted(TALLY.items()):
        terminalreporter.write_line(f"{family:<28} {n:>5}")
    terminalreporter.write_line(f"{'total':<28} {sum(TALLY.values()):>5}")


@pytest.fixture(scope="session")
def bad(file_backend) -> Iterator[BadStack]:
    api = start_api({**file_backend.env, **ENV}, LOGS)
    yield BadStack(api.url, file_backend, KEYS)
    api.stop()


@pytest.fixture
def mallory(bad):
    return bad.session("mallory")


@pytest.fixture(scope="session")
def bad_model(bad, tiny_spec, tiny_weights) -> str:
    """The tiny model (resnet18, 10 classes, 32×32) of tenant mallory, ready."""
    session = bad.session("mallory")
    response = register_model(session, bad.url, tiny_spec, tiny_weights.read_bytes())
    assert response.status_code in (201, 409), response.text
    record = model_ready(session, bad.url, tiny_spec["name"])
    assert record["status"] == "ready", record
    return tiny_spec["name"]


@pytest.fixture(scope="session")
def reference(tiny_spec, tiny_weights) -> Reference:
    return Reference(tiny_spec, tiny_weights)


@pytest.fixture(scope="session", autouse=True)
def worker(file_backend) -> tuple[int, frozenset[int]]:
    """The worker's processes before the suite's first case; `check_worker` compares with
    them (a pool child that crashed would have been replaced by a new one)."""
    return worker_processes(file_backend.name)
