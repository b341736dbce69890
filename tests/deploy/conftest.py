"""Fixtures for the deployment checks: the repository, the rendered overlays, what the code reads.

Nothing here needs Docker or a cluster: overlays are rendered offline by `kubectl kustomize`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .envscan import variables_read
from .helpers import kustomize

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("cpu", "gpu")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, as `kubectl kustomize k8s/overlays/<name>` prints them."""
    return {name: kustomize(ROOT / "k8s" / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def code_variables() -> dict[str, list[str]]:
    found = variables_read(ROOT)
    # Guard against a scanner that silently finds nothing.
    assert {"REDIS_URL", "STORAGE_URL"} <= set(found), found
    return found


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def secret_example() -> dict[str, str]:
    """The Secret `saliency-secrets` as its committed example has it: key -> value."""
    lines = (ROOT / "k8s" / "secrets.env.example").read_text().splitlines()
    return {m.group(1): m.group(2) for line in lines
            if (m := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line))}


@pytest.fixture(scope="session")
def secret_keys(secret_example) -> set[str]:
    """The keys of the Secret `saliency-secrets`."""
    return set(secret_example)
