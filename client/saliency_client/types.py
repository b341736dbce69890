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
    """Items done and failed of `total` (a visualize job's steps); a data-set job is
    `planning` (total 0) until its items are listed, and `finalizing` while its results file
    and report are written. A top_activations job's second phase counts its projections
    done of `projections_due` (0 before the phase starts)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    planning: bool = False
    finalizing: bool = False
    skipped: int = 0
    projections_done: int = 0
    projections_due: int = 0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Progress:
        projections = raw.get("projections") or {}
        return cls(raw.get("total", 0), raw.get("done", 0), raw.get("failed", 0),
                   bool(raw.get("planning")), bool(raw.get("finalizing")),
                   raw.get("skipped", 0), projections.get("done", 0),
                   projections.get("due", 0))


@dataclass(frozen=True)
class JobState:
    """One answer of `GET /v1/jobs/{id}`."""

    id: str
    status: JobStatus
    progress: Progress
    kind: str = "attribution"
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobState:
        return cls(
            id=raw["id"],
            status=JobStatus(raw["status"]),
            progress=Progress.from_json(raw.get("progress") or {}),
            kind=raw.get("kind", "attribution"),
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
    """The artifacts of one (method, target) of an item: URLs, or None when not requested.

    A visualize item's one output (`method` "visualize") has the final image (`png`, `npy`),
    its `snapshots` (URLs, or objects with a `png` URL and their `step`) and its objective
    `curve` (a URL of the JSON, or the values themselves). `rank` is the target's rank of a
    `{"topk": k}` job (0: the highest score), None otherwise.
    """

    method: str
    target: Any
    npy: str | None = None
    png: str | None = None
    overlay: str | None = None
    signed: str | None = None
    params: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    snapshots: tuple[Any, ...] = ()
    curve: Any = None
    rank: int | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Output:
        return cls(raw["method"], raw.get("target"), raw.get("npy"), raw.get("png"),
                   raw.get("overlay"), raw.get("signed"), raw.get("params"), raw.get("metrics"),
                   tuple(raw.get("warnings") or ()), tuple(raw.get("snapshots") or ()),
                   raw.get("curve"), raw.get("rank"))


@dataclass(frozen=True)
class Prediction:
    class_index: int
    score: float
    class_name: str | None = None


@dataclass(frozen=True)
class Item:
    """One input of a job and its results; `id` and `label` when the input had them."""

    index: int
    input: Any
    status: str
    error: str | None
    prediction: Prediction | None
    outputs: tuple[Output, ...]
    id: str | None = None
    label: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Item:
        pred = raw.get("prediction")
        prediction = None
        if pred:
            name = pred.get("class_name", pred.get("label"))
            prediction = Prediction(pred["class"], pred["score"], name)
        return cls(
            index=raw["index"],
            input=raw.get("input"),
            status=raw.get("status", ""),
            error=raw.get("error"),
            prediction=prediction,
            outputs=tuple(Output.from_json(o) for o in raw.get("outputs") or ()),
            id=raw.get("id"),
            label=raw.get("label"),
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
class Layer:
    """One module of a model as its first load recorded it (`GET /v1/models/{name}/layers`):
    its output's shape (batch excluded) and layout, whether a job may name it (`usable`),
    whether it is the default Grad-CAM layer, and whether a max-pooling precedes it (None:
    not recorded)."""

    name: str
    module: str
    shape: tuple[int, ...] | None
    layout: str | None
    usable: bool
    default: bool
    max_pool_before: bool | None
    problem: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Layer:
        shape = raw.get("shape")
        return cls(raw["name"], raw.get("module", ""),
                   None if shape is None else tuple(shape), raw.get("layout"),
                   bool(raw.get("usable")), bool(raw.get("default")),
                   raw.get("max_pool_before"), raw.get("problem"), raw)


@dataclass(frozen=True)
class Layers:
    """A model's layers, in the order a forward pass returned them, and its default Grad-CAM
    layer (None: `default_problem` says why)."""

    model: str
    layers: tuple[Layer, ...]
    default: str | None
    default_problem: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Layers:
        return cls(raw["model"], tuple(Layer.from_json(x) for x in raw.get("layers") or ()),
                   raw.get("default"), raw.get("default_problem"), raw)

    @property
    def usable(self) -> list[Layer]:
        """The layers a job may name (Grad-CAM, layer targets, top_activations, visualize)."""
        return [layer for layer in self.layers if layer.usable]


@dataclass(frozen=True)
class Param:
    """A method's parameter: its type (`int`, `float`, `choice`, …), default and bounds."""

    name: str
    type: str
    default: Any = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Param:
        return cls(raw["name"], raw.get("type", ""), raw.get("default"),
                   raw.get("description", ""), raw.get("minimum"), raw.get("maximum"),
                   tuple(raw.get("choices") or ()))


@dataclass(frozen=True)
class Method:
    """An attribution method the service offers (`GET /v1/methods`), with its parameters."""

    name: str
    description: str = ""
    params: tuple[Param, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


@dataclass(frozen=True)
class Roots:
    """Where the tenant's data-set jobs may read (`GET /v1/roots`): its own area of the
    service's storage, and the data-set roots open to it."""

    storage: str
    roots: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Roots:
        return cls(raw["storage"], tuple(raw.get("roots") or ()))

    def covering(self, uri: str) -> str | None:
        """The root (or the own area) that holds `uri`, or None when the service cannot
        read it in place."""
        folder = uri.rstrip("/") + "/"
        for root in (*self.roots, self.storage):
            if folder.startswith(root.rstrip("/") + "/"):
                return root
        return None


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
        Method(m) if isinstance(m, str) else Method(
            m["name"], m.get("description", ""),
            tuple(Param.from_json(p) for p in m.get("params") or ()))
        for m in body
    ]
