"""Typed views of the API's JSON (contract v1); each keeps the full JSON in `raw`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from saliency_client.errors import JobFailed


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Progress:
    total: int = 0
    done: int = 0
    failed: int = 0


@dataclass(frozen=True)
class JobState:
    """One answer of `GET /v1/jobs/{id}`."""

    id: str
    status: JobStatus
    progress: Progress
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobState:
        p = raw.get("progress") or {}
        return cls(
            id=raw["id"],
            status=JobStatus(raw["status"]),
            progress=Progress(p.get("total", 0), p.get("done", 0), p.get("failed", 0)),
            created_at=raw.get("created_at"),
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            error=raw.get("error"),
            raw=raw,
        )

    def raise_for_status(self) -> None:
        """JobFailed if the job ended failed or cancelled."""
        if self.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise JobFailed(self.id, self.status.value, self.error)


@dataclass(frozen=True)
class Output:
    """The artifacts of one (method, target) of an item: URLs, or None when not requested."""

    method: str
    target: Any
    npy: str | None = None
    png: str | None = None
    overlay: str | None = None
    signed: str | None = None


@dataclass(frozen=True)
class Prediction:
    class_index: int
    score: float
    class_name: str | None = None


@dataclass(frozen=True)
class Item:
    """One input of a job and its results."""

    index: int
    input: Any
    status: str
    error: str | None
    prediction: Prediction | None
    outputs: tuple[Output, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Item:
        pred = raw.get("prediction")
        prediction = None
        if pred:
            name = pred.get("class_name", pred.get("label"))
            prediction = Prediction(pred["class"], pred["score"], name)
        outputs = tuple(
            Output(o["method"], o.get("target"), o.get("npy"), o.get("png"), o.get("overlay"),
                   o.get("signed"))
            for o in raw.get("outputs") or ()
        )
        return cls(
            index=raw["index"],
            input=raw.get("input"),
            status=raw.get("status", ""),
            error=raw.get("error"),
            prediction=prediction,
            outputs=outputs,
            raw=raw,
        )


@dataclass(frozen=True)
class Model:
    """A registered model (`GET /v1/models`)."""

    name: str
    architecture: str | None
    num_classes: int | None
    class_names: tuple[str, ...] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Model:
        names = raw.get("class_names")
        return cls(
            name=raw["name"],
            architecture=raw.get("architecture"),
            num_classes=raw.get("num_classes"),
            class_names=tuple(names) if names is not None else None,
            raw=raw,
        )


@dataclass(frozen=True)
class Method:
    """An attribution method the service offers (`GET /v1/methods`)."""

    name: str
    description: str = ""


def unwrap_list(body: Any, key: str) -> list[Any]:
    """Accept both `[...]` and `{key: [...]}` list answers."""
    if isinstance(body, dict):
        body = body.get(key, [])
    return list(body)


def parse_methods(body: Any) -> list[Method]:
    """`GET /v1/methods` as Method objects, whether it lists names, objects or a name->doc map."""
    if isinstance(body, dict) and "methods" in body:
        body = body["methods"]
    if isinstance(body, dict):
        return [Method(name, str(doc)) for name, doc in body.items()]
    return [
        Method(m) if isinstance(m, str) else Method(m["name"], m.get("description", ""))
        for m in body
    ]
