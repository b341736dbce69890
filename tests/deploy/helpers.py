"""Small helpers the deployment tests share: rendering overlays with `kubectl kustomize`,
look-ups in rendered manifests, compose syntax."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` renders (Kustomize v5, offline)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "the deployment tests need kubectl (with its built-in Kustomize) on PATH"
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def configmap(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the ConfigMap every workload loads."""
    return find(objects, "ConfigMap", "saliency-config")["data"]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(obj)["containers"] if c["name"] == name]
    return found


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `$$`, with `env` as the shell's environment."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(3)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, value)


def seconds(duration: str | int) -> float:
    """Compose durations such as `960s`, `1m30s`, `40s`."""
    if isinstance(duration, int):
        return duration
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def split_image(ref: str) -> tuple[str, str | None]:
    """`registry:5000/name:tag@sha256:...` -> (`registry:5000/name`, `tag`)."""
    ref = ref.partition("@")[0]
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, None
    return name, tag
