"""Registered models' records in Redis: one hash per tenant, plus the built-in models' hash.

A record is `validating` until a worker has built the model, checked its weights against the
architecture and run a forward pass; then `ready`, or `invalid` with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import redis

from shared.modelspec import ModelSpec, model_spec_from_json
from shared.redisio import PREFIX

BUILTIN_TENANT = "_builtin"


class ModelStatus(StrEnum):
    VALIDATING = "validating"
    READY = "ready"
    INVALID = "invalid"


def models_key(tenant: str) -> str:
    return f"{PREFIX}models:{tenant}"


@dataclass(frozen=True)
class ModelRecord:
    """A registered model: its spec, where its artifact is, and whether it is usable."""

    spec: ModelSpec
    format: str  # "safetensors" | "pt2"
    artifact: str
    sha256: str
    size: int
    created_at: str
    builtin: bool
    status: ModelStatus = ModelStatus.VALIDATING
    error: str | None = None
    # Output shapes (C, H, W) of the modules whose output is one N×C×H×W feature map (a
    # layout established, not read from the rank: worker/layouts.py), recorded when the model
    # is validated: the API checks layer targets against them.
    layer_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def with_status(self, status: ModelStatus, error: str | None = None,
                    layer_shapes: dict[str, tuple[int, int, int]] | None = None) -> ModelRecord:
        return replace(self, status=status, error=error,
                       layer_shapes=self.layer_shapes if layer_shapes is None else layer_shapes)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(), "format": self.format, "artifact": self.artifact,
            "sha256": self.sha256, "size": self.size, "created_at": self.created_at,
            "builtin": self.builtin, "status": self.status.value, "error": self.error,
            "layer_shapes": {k: list(v) for k, v in self.layer_shapes.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelRecord:
        return cls(
            spec=model_spec_from_json(raw["spec"]), format=raw["format"],
            artifact=raw["artifact"], sha256=raw["sha256"], size=raw["size"],
            created_at=raw["created_at"], builtin=raw["builtin"],
            status=ModelStatus(raw.get("status", ModelStatus.READY.value)),
            error=raw.get("error"),
            layer_shapes={k: tuple(v) for k, v in raw.get("layer_shapes", {}).items()},
        )

    def api_json(self) -> dict[str, Any]:
        """The API's representation of a registered model."""
        out = self.spec.to_json()
        out["class_names"] = list(out["class_names"]) if out.get("class_names") else None
        out.update(format=self.format, sha256=self.sha256, size=self.size,
                   created_at=self.created_at, builtin=self.builtin,
                   status=self.status.value, error=self.error)
        return out


class ModelStore:
    """Model records of every tenant; built-in models are visible to all."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def put(self, tenant: str, record: ModelRecord, *, replace: bool) -> bool:
        """Store a record; without `replace`, False if the name is taken."""
        raw = json.dumps(record.to_json())
        if replace:
            self.redis.hset(models_key(tenant), record.name, raw)
            return True
        return bool(self.redis.hsetnx(models_key(tenant), record.name, raw))

    def get(self, tenant: str, name: str) -> ModelRecord | None:
        """The tenant's model of that name, else a built-in one, else None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(models_key(tenant), name)
        pipe.hget(models_key(BUILTIN_TENANT), name)
        own, builtin = pipe.execute()
        raw = own or builtin
        return ModelRecord.from_json(json.loads(raw)) if raw else None

    def owner(self, tenant: str, name: str) -> str | None:
        """Whose record `get` would return: the tenant, the built-in tenant, or None."""
        if self.redis.hexists(models_key(tenant), name):
            return tenant
        return BUILTIN_TENANT if self.redis.hexists(models_key(BUILTIN_TENANT), name) else None

    def list(self, tenant: str) -> list[ModelRecord]:
        merged = {**self.redis.hgetall(models_key(BUILTIN_TENANT)),
                  **self.redis.hgetall(models_key(tenant))}
        return [ModelRecord.from_json(json.loads(merged[name])) for name in sorted(merged)]

    def delete(self, tenant: str, name: str) -> ModelRecord | None:
        raw = self.redis.hget(models_key(tenant), name)
        if raw:
            self.redis.hdel(models_key(tenant), name)
        return ModelRecord.from_json(json.loads(raw)) if raw else None
