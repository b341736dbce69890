"""Registering models: the artifact goes to storage (streamed, never held in memory), the
record to Redis as `validating`; a worker's `validate_model` task makes it `ready` or
`invalid`. Built-in models' records are put in place the same way, before the API answers.
Their names are reserved, whether or not this deployment loads them.
"""

from __future__ import annotations

import hashlib
import logging
from typing import BinaryIO

from shared.errors import ConflictError
from shared.models.builtin import BUILTIN_MODELS, BUILTIN_NAMES
from shared.spec.model import ModelSpec, parse_model_spec
from shared.state.modelstore import BUILTIN_TENANT, ModelRecord, ModelStatus, ModelStore
from shared.state.redisio import now_iso
from shared.storage.interface import Storage
from shared.storage.keys import model_artifact

log = logging.getLogger(__name__)
HASH_CHUNK = 1 << 20


def sha256_of(stream: BinaryIO) -> tuple[str, int]:
    """The SHA-256 and size of a seekable stream, read in chunks; the stream is rewound."""
    digest, size = hashlib.sha256(), 0
    stream.seek(0)
    for chunk in iter(lambda: stream.read(HASH_CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


def register_model(models: ModelStore, storage: Storage, tenant: str, spec: ModelSpec,
                   kind: str, stream: BinaryIO, *, replace: bool = False) -> ModelRecord:
    """Store the artifact, then the `validating` record; a taken or reserved name is 409."""
    if spec.name in BUILTIN_NAMES:
        raise ConflictError(f"model name {spec.name!r} is reserved for a built-in model; "
                            "register yours under another name")
    if not replace and models.owner(tenant, spec.name) == tenant:
        raise ConflictError(f"model {spec.name!r} is already registered")
    sha, size = sha256_of(stream)
    key = model_artifact(tenant, spec.name, sha, kind)
    record = ModelRecord(spec=spec, format=kind, artifact=key, sha256=sha, size=size,
                         created_at=now_iso(), builtin=tenant == BUILTIN_TENANT)
    storage.put_stream(key, stream, "application/octet-stream")
    if not models.put(tenant, record, replace=replace):
        storage.delete(key)
        raise ConflictError(f"model {spec.name!r} is already registered")
    return record


def ensure_builtin_records(models: ModelStore) -> list[str]:
    """Put a `validating` record for every built-in model that has none; returns their names
    (each needs a `validate_model` task, which builds and uploads its artifact)."""
    missing = []
    for builtin in BUILTIN_MODELS:
        spec = parse_model_spec(builtin.spec, needs_architecture=builtin.format == "safetensors")
        record = ModelRecord(spec=spec, format=builtin.format, artifact="", sha256="", size=0,
                             created_at=now_iso(), builtin=True, status=ModelStatus.VALIDATING)
        if models.put(BUILTIN_TENANT, record, replace=False):
            log.info("built-in model %s recorded; a worker validates it", spec.name)
            missing.append(spec.name)
    return missing
