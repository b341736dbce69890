"""Registered models: a spec record in Redis per tenant, the artifact in storage.

Built-in models (visible to every tenant) are declared in `BUILTIN_MODELS` and registered by
`register_builtin_models` when the worker starts, if `settings.builtin_models` is true.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConflictError
from shared.jobstore import BUILTIN_TENANT, JobStore, now_iso
from shared.specs import ModelSpec, model_spec_from_json, parse_model_spec
from shared.storage import Storage

log = logging.getLogger(__name__)
ARTIFACT_KINDS = {"safetensors": ".safetensors", "pt2": ".pt2"}


def artifact_key(tenant: str, name: str, sha256: str, kind: str) -> str:
    return f"t/{tenant}/models/{name}/{sha256}{ARTIFACT_KINDS[kind]}"


def register_model(
    store: JobStore,
    storage: Storage,
    tenant: str,
    spec: ModelSpec,
    kind: str,
    data: bytes,
    *,
    replace: bool = False,
) -> dict[str, Any]:
    """Store the artifact, then the record; a taken name is a `ConflictError` (409)."""
    if not replace and store.get_model(tenant, spec.name) is not None:
        raise ConflictError(f"model {spec.name!r} is already registered")
    sha = hashlib.sha256(data).hexdigest()
    key = artifact_key(tenant, spec.name, sha, kind)
    record = {
        "spec": spec.to_json(),
        "format": kind,
        "artifact": key,
        "sha256": sha,
        "size": len(data),
        "created_at": now_iso(),
        "builtin": tenant == BUILTIN_TENANT,
    }
    storage.put(key, data, "application/octet-stream")
    if not store.put_model(tenant, spec.name, record, replace=replace):
        storage.delete(key)
        raise ConflictError(f"model {spec.name!r} is already registered")
    return record


def record_spec(record: dict[str, Any]) -> ModelSpec:
    return model_spec_from_json(record["spec"])


def model_json(record: dict[str, Any]) -> dict[str, Any]:
    """The API's representation of a registered model."""
    out = dict(record["spec"])
    out["class_names"] = list(out["class_names"]) if out.get("class_names") else None
    out.update(
        format=record["format"],
        sha256=record["sha256"],
        size=record["size"],
        created_at=record["created_at"],
        builtin=record["builtin"],
    )
    return out


@dataclass(frozen=True)
class BuiltinModel:
    """A model every tenant can use; `artifact` produces its file (may import torch)."""

    spec: dict[str, Any]
    format: str  # "safetensors" | "pt2"
    artifact: Callable[[], Path]


# The hook for built-in models: append entries here (issue 6 adds efficientnet_lite0).
BUILTIN_MODELS: tuple[BuiltinModel, ...] = ()


def register_builtin_models(
    store: JobStore, storage: Storage, models: tuple[BuiltinModel, ...] = BUILTIN_MODELS
) -> list[str]:
    """Register (or refresh) every built-in model; unchanged artifacts are not re-uploaded."""
    names = []
    for model in models:
        spec = parse_model_spec(model.spec, needs_architecture=model.format == "safetensors")
        data = model.artifact().read_bytes()
        existing = store.get_model(BUILTIN_TENANT, spec.name)
        if existing and existing["sha256"] == hashlib.sha256(data).hexdigest():
            names.append(spec.name)
            continue
        register_model(store, storage, BUILTIN_TENANT, spec, model.format, data, replace=True)
        log.info("registered built-in model %s", spec.name)
        names.append(spec.name)
    return names
