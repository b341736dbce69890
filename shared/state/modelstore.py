"""Registered models' records in Redis: one hash per tenant, plus the built-in models' hash.

A record is `validating` until a worker has built the model, checked its weights against the
architecture and run a forward pass; then `ready`, or `invalid` with the reason. A name is
looked up among the built-in models first: a tenant's record of a built-in model's name
(registered before such names were reserved) is listed and can be deleted, never used.
A job is pinned to the record it was accepted for (`ModelPin`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis

from shared.errors import InputError
from shared.spec.layers import ModelLayers
from shared.spec.model import ModelSpec, model_spec_from_json
from shared.state.redisio import PREFIX

if TYPE_CHECKING:
    from shared.state.jobs import Job

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
    format: str  # "safetensors" | "pt2" | "transformers" (a Hugging Face bundle)
    artifact: str
    sha256: str
    size: int
    created_at: str
    builtin: bool
    status: ModelStatus = ModelStatus.VALIDATING
    error: str | None = None
    # Every module's output shape and layout at the input size, and the default Grad-CAM
    # layer (`shared.spec.layers`), recorded when the model is validated: the API checks layer
    # targets against them. Empty while the model is validating.
    layers: ModelLayers = field(default_factory=ModelLayers)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def layer_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of the layers whose output is read as a grid of channels."""
        return self.layers.shapes

    def with_status(self, status: ModelStatus, error: str | None = None,
                    layers: ModelLayers | None = None) -> ModelRecord:
        return replace(self, status=status, error=error,
                       layers=self.layers if layers is None else layers)

    def to_json(self) -> dict[str, Any]:
        """The stored record; `layer_shapes` is kept beside `layers` for readers that
        predate it."""
        return {
            "spec": self.spec.to_json(), "format": self.format, "artifact": self.artifact,
            "sha256": self.sha256, "size": self.size, "created_at": self.created_at,
            "builtin": self.builtin, "status": self.status.value, "error": self.error,
            "layer_shapes": {k: list(v) for k, v in self.layer_shapes.items()},
            "layers": self.layers.to_json(),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelRecord:
        """A stored record. One written before layouts were recorded lists only its N×C×H×W
        layers, not the others a job may now name: its layers read as not known, as while
        a model is validating, and the worker checks them against the loaded model."""
        layers = ModelLayers.from_json(raw["layers"]) if "layers" in raw else ModelLayers()
        return cls(
            spec=model_spec_from_json(raw["spec"]), format=raw["format"],
            artifact=raw["artifact"], sha256=raw["sha256"], size=raw["size"],
            created_at=raw["created_at"], builtin=raw["builtin"],
            status=ModelStatus(raw.get("status", ModelStatus.READY.value)),
            error=raw.get("error"), layers=layers,
        )

    def api_json(self) -> dict[str, Any]:
        """The API's representation of a registered model."""
        out = self.spec.to_json()
        out["class_names"] = list(out["class_names"]) if out.get("class_names") else None
        out.update(format=self.format, sha256=self.sha256, size=self.size,
                   created_at=self.created_at, builtin=self.builtin,
                   status=self.status.value, error=self.error)
        return out


@dataclass(frozen=True)
class ModelPin:
    """The exact model record a job was accepted for: whose it is, its name, and when it was
    registered. A model deleted or registered again since has no such record any more: the
    job then fails, it never runs on another model."""

    owner: str
    name: str
    created_at: str

    @classmethod
    def of(cls, tenant: str, record: ModelRecord) -> ModelPin:
        """The pin of `record`, as `tenant` found it (a built-in model's owner is its own)."""
        return cls(BUILTIN_TENANT if record.builtin else tenant, record.name, record.created_at)

    def to_json(self) -> dict[str, str]:
        return {"owner": self.owner, "name": self.name, "created_at": self.created_at}

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> ModelPin:
        return cls(raw["owner"], raw["name"], raw["created_at"])


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
        """The built-in model of that name, else the tenant's, else None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(models_key(BUILTIN_TENANT), name)
        pipe.hget(models_key(tenant), name)
        builtin, own = pipe.execute()
        raw = builtin or own
        return ModelRecord.from_json(json.loads(raw)) if raw else None

    def owner(self, tenant: str, name: str) -> str | None:
        """Whose record `get` returns: the built-in tenant, the tenant, or None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hexists(models_key(BUILTIN_TENANT), name)
        pipe.hexists(models_key(tenant), name)
        builtin, own = pipe.execute()
        return BUILTIN_TENANT if builtin else tenant if own else None

    def pinned(self, pin: ModelPin) -> ModelRecord:
        """The record a job was pinned to; an InputError saying so if the model was deleted,
        or registered again, after the job was submitted."""
        record = self._record(pin.owner, pin.name)
        if record is None:
            raise InputError(f"model {pin.name!r} was deleted after this job was submitted")
        if record.created_at != pin.created_at:
            raise InputError(
                f"model {pin.name!r} was registered again after this job was submitted (the "
                f"job was accepted for the one registered at {pin.created_at}); submit the "
                "job again to run it on the new one")
        return record

    def for_job(self, job: Job) -> ModelRecord:
        """A job's model record (see `pinned`). A job stored before jobs were pinned gets
        the record its tenant finds by name."""
        if job.model_pin is not None:
            return self.pinned(job.model_pin)
        record = self.get(job.tenant, job.spec.model)
        if record is None:
            raise InputError(f"model {job.spec.model!r} is no longer registered")
        return record

    def list(self, tenant: str) -> list[ModelRecord]:
        """The built-in models and the tenant's, by name (a built-in model first)."""
        builtin = self.redis.hgetall(models_key(BUILTIN_TENANT))
        own = self.redis.hgetall(models_key(tenant)) if tenant != BUILTIN_TENANT else {}
        records = [ModelRecord.from_json(json.loads(raw))
                   for raw in (*builtin.values(), *own.values())]
        return sorted(records, key=lambda r: (r.name, not r.builtin))

    def delete(self, tenant: str, name: str) -> ModelRecord | None:
        """Remove the tenant's own record of that name (never a built-in one)."""
        record = self._record(tenant, name)
        if record is not None:
            self.redis.hdel(models_key(tenant), name)
        return record

    def _record(self, owner: str, name: str) -> ModelRecord | None:
        raw = self.redis.hget(models_key(owner), name)
        return ModelRecord.from_json(json.loads(raw)) if raw else None
