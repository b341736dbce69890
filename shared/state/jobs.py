"""A job as stored: the typed record `JobStore` (`shared.state.jobstore`) reads and writes.

A job is a Redis hash (its fields: `shared.state.jobschema.JobField`). Its status moves `queued` →
`running` (when its first chunk is taken, `shared.state.chunks`) → final, and it becomes final only
after its finalizer has run, so a final job's files are always readable. Its spec is stored
as `JobSpec.to_json()` and read back typed: the kind's own spec in `spec.work`, and the data
set of a data-set job in `spec.dataset`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from shared.results.records import InputSource
from shared.spec.job import JobSpec, job_spec_from_json
from shared.state.jobschema import ItemsLayout
from shared.state.jobschema import JobField as F
from shared.state.modelstore import ModelPin
from shared.state.redisio import now_iso, now_ms
from shared.status import JobStatus


def _flag(raw: dict[str, str], field: F) -> bool:
    return raw.get(field) == "1"


def _int(raw: dict[str, str], field: F) -> int:
    return int(raw.get(field, 0))


@dataclass(frozen=True)
class Job:
    """A job as stored; `to_json` is the API's representation."""

    id: str
    tenant: str
    kind: str
    status: JobStatus
    spec: JobSpec
    layout: ItemsLayout
    total: int
    done: int
    failed: int
    skipped: int
    planning: bool
    finalizing: bool
    final_status: JobStatus | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    first_error: str | None
    created_ts: float
    progress_ms: int
    expires_at: float | None
    extra_progress: dict[str, Any]
    plan_chunk: int = 0  # items per planned chunk of a data-set job (its plan files)
    phase: int = 0  # a multi-phase job's current phase (0: the one over its items)
    notify_attempts: tuple[dict[str, Any], ...] = ()
    model_pin: ModelPin | None = None  # None only for jobs stored before jobs were pinned

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[str, str]) -> Job:
        """The job stored in hash `raw` (as any version of `NewJob.fields` wrote it)."""
        extra: dict[str, Any] = {}
        if F.STEPS_TOTAL in raw:  # a visualization counts steps, its items in `items`
            extra = {"total": int(raw[F.STEPS_TOTAL]), "done": _int(raw, F.STEPS_DONE),
                     "items": {"total": int(raw[F.TOTAL]), "done": _int(raw, F.DONE),
                               "failed": _int(raw, F.FAILED)}}
        if _int(raw, F.PROJECTIONS_DUE):
            extra["projections"] = {"done": _int(raw, F.PROJECTIONS_DONE),
                                    "due": int(raw[F.PROJECTIONS_DUE])}
        return cls(
            id=job_id,
            tenant=raw[F.TENANT],
            kind=raw.get(F.KIND, "attribution"),
            status=JobStatus(raw[F.STATUS]),
            spec=job_spec_from_json(json.loads(raw[F.SPEC])),
            layout=ItemsLayout(raw.get(F.LAYOUT, ItemsLayout.REDIS)),
            total=int(raw[F.TOTAL]),
            done=_int(raw, F.DONE),
            failed=_int(raw, F.FAILED),
            skipped=_int(raw, F.SKIPPED),
            planning=_flag(raw, F.PLANNING),
            finalizing=_flag(raw, F.FINALIZING),
            final_status=JobStatus(raw[F.FINAL_STATUS]) if raw.get(F.FINAL_STATUS) else None,
            created_at=raw[F.CREATED_AT],
            started_at=raw.get(F.STARTED_AT),
            finished_at=raw.get(F.FINISHED_AT),
            error=raw.get(F.ERROR),
            first_error=raw.get(F.FIRST_ERROR),
            created_ts=float(raw[F.CREATED_TS]),
            progress_ms=_int(raw, F.PROGRESS_MS),
            expires_at=float(raw[F.EXPIRES_AT]) if raw.get(F.EXPIRES_AT) else None,
            extra_progress=extra,
            plan_chunk=_int(raw, F.PLAN_CHUNK),
            phase=_int(raw, F.PHASE),
            notify_attempts=tuple(json.loads(raw[F.NOTIFY_ATTEMPTS]))
            if raw.get(F.NOTIFY_ATTEMPTS) else (),
            model_pin=ModelPin.from_json(json.loads(raw[F.MODEL_PIN]))
            if raw.get(F.MODEL_PIN) else None,
        )

    def to_json(self) -> dict[str, Any]:
        progress: dict[str, Any] = {"total": self.total, "done": self.done,
                                    "failed": self.failed, "planning": self.planning,
                                    "finalizing": self.finalizing}
        if self.skipped:
            progress["skipped"] = self.skipped
        progress.update(self.extra_progress)
        out = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status.value,
            **{k: v for k, v in self.spec.to_json().items() if k not in ("kind", "notify")},
            "progress": progress,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }
        if self.spec.notify:
            out["notify"] = {**self.spec.notify, "attempts": list(self.notify_attempts)}
        return out


@dataclass(frozen=True)
class NewJob:
    """What the API knows of a job when it stores it."""

    id: str
    tenant: str
    spec: JobSpec
    inputs: tuple[InputSource, ...] = ()
    total: int | None = None  # items, when they are not the inputs (a visualization's)
    steps: int | None = None  # a visualization's total of optimization steps
    model_pin: ModelPin | None = None  # the model record the job was accepted for

    @property
    def items(self) -> int:
        return len(self.inputs) if self.total is None else self.total

    def fields(self) -> dict[str, Any]:
        """Its hash as `JobStore.create` stores it: queued, planning if it reads a data set."""
        fields: dict[str, Any] = {
            F.TENANT: self.tenant, F.KIND: self.spec.kind, F.STATUS: JobStatus.QUEUED.value,
            F.SPEC: json.dumps(self.spec.to_json()),
            F.LAYOUT: ItemsLayout.PLANNED if self.spec.dataset else ItemsLayout.REDIS,
            F.TOTAL: self.items,
            F.DONE: 0, F.FAILED: 0, F.SKIPPED: 0, F.PLANNING: int(self.spec.dataset is not None),
            F.FINALIZING: 0, F.OPEN: 0, F.FENCE: 0, F.CREATED_AT: now_iso(),
            F.CREATED_TS: repr(time.time()), F.PROGRESS_MS: now_ms(),
        }
        if self.steps is not None:
            fields.update({F.STEPS_TOTAL: self.steps, F.STEPS_DONE: 0})
        if self.model_pin is not None:
            fields[F.MODEL_PIN] = json.dumps(self.model_pin.to_json())
        return fields
