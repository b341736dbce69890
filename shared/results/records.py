"""The item and output records both sides rely on, as typed records with `to_json`/`from_json`.

The worker writes them (to Redis for upload and inline jobs, to a rows file per segment for
data-set jobs); the API reads them back to answer `/items`; the finalizer turns them into the
results file. Nothing else parses their JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from shared.spec.annotations import ImageObjects
from shared.status import ItemStatus
from shared.storage.parts import Part

OUTPUT_FILES = ("npy", "png", "overlay", "signed")
VISUALIZE_FILES = ("png", "npy", "curve")


def finite_or_none(value: float | None) -> float | None:
    """A float fit for strict JSON: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class MapRef:
    """Where a map lives inside a shard (`shared.storage.shards`): the shard's key and its row in
    the `maps.<position>` tensor of its output's method position."""

    shard: str
    row: int

    def to_json(self) -> dict[str, Any]:
        return {"shard": self.shard, "row": self.row}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MapRef:
        return cls(raw["shard"], raw["row"])


@dataclass(frozen=True)
class OutputRecord:
    """One map of one item: which method made it, of what, and where its files are.

    `rank` is the target's rank among a `{"topk": k}` target's classes (0: the highest
    score); None for any other target, which gives one map per method. `colorbars` gives,
    per picture kind, the values its colours stand for (`shared.media.renderings.Colorbar`);
    `grid` is the layer grid (h, w) a CAM was upsampled from, which its pictures smooth over.
    """

    method: str
    position: int
    target: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # kind -> storage key
    map: MapRef | None = None  # data-set jobs: the raw map inside a shard
    params: dict[str, Any] | None = None
    coverage: dict[str, int] | None = None
    metrics: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    convergence_delta: float | None = None
    snapshots: tuple[str, ...] = ()  # a visualization's pictures as it went (storage keys)
    rank: int | None = None
    colorbars: dict[str, Any] | None = None
    grid: tuple[int, int] | None = None

    @property
    def leading(self) -> bool:
        """Whether this is the map of the item's first target (its only one, or top-k's rank
        0: the predicted class), the one the audit reads."""
        return not self.rank

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "position": self.position,
                               "target": self.target, "files": self.files}
        if self.rank is not None:
            out["rank"] = self.rank
        if self.snapshots:
            out["snapshots"] = list(self.snapshots)
        if self.map is not None:
            out["map"] = self.map.to_json()
        for name in ("params", "coverage", "metrics", "colorbars"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.grid is not None:
            out["grid"] = list(self.grid)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.convergence_delta is not None:
            out["convergence_delta"] = self.convergence_delta
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> OutputRecord:
        return cls(
            method=raw["method"],
            position=raw["position"],
            target=raw["target"],
            files=raw.get("files", {}),
            map=MapRef.from_json(raw["map"]) if raw.get("map") else None,
            params=raw.get("params"),
            coverage=raw.get("coverage"),
            metrics=raw.get("metrics"),
            warnings=tuple(raw.get("warnings", ())),
            convergence_delta=raw.get("convergence_delta"),
            snapshots=tuple(raw.get("snapshots", ())),
            rank=raw.get("rank"),
            colorbars=raw.get("colorbars"),
            grid=tuple(raw["grid"]) if raw.get("grid") else None,
        )


@dataclass(frozen=True)
class Prediction:
    """The model's top class for an item, its softmax probability and its name."""

    cls: int
    score: float
    label: str | None

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "score": finite_or_none(self.score), "label": self.label}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Prediction:
        return cls(raw["class"], raw["score"], raw.get("label"))


@dataclass(frozen=True)
class ItemRecord:
    """The result of one input of a job."""

    index: int
    status: ItemStatus
    input: str
    id: str | None = None
    error: str | None = None
    prediction: Prediction | None = None
    outputs: tuple[OutputRecord, ...] = ()
    worker: str | None = None
    label: int | None = None  # the item's own label, when the data set gives one
    label_score: float | None = None  # softmax probability of `label`
    box: tuple[int, int, int, int] | None = None
    baseline: dict[str, Any] | None = None  # the centre-Gaussian map's metrics, same object

    @property
    def ok(self) -> bool:
        return self.status == ItemStatus.SUCCEEDED

    @property
    def correct(self) -> bool | None:
        if self.label is None or self.prediction is None:
            return None
        return self.label == self.prediction.cls

    def output(self, position: int, rank: int | None = None) -> OutputRecord | None:
        """The output of method `position` and, for a top-k target, of target `rank`."""
        return next((o for o in self.outputs if o.position == position and o.rank == rank),
                    None)

    def with_status(self, status: ItemStatus, error: str | None = None) -> ItemRecord:
        return replace(self, status=status, error=error)

    def ended_unfinished(self) -> ItemRecord:
        """This record once its job has ended: an item still `pending` (its progress shown
        part-way) is `cancelled`, keeping what it showed; a finished one is as it was."""
        if self.status != ItemStatus.PENDING:
            return self
        return self.with_status(ItemStatus.CANCELLED, "not finished: the job ended first")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index, "status": self.status.value, "input": self.input,
            "error": self.error,
            "prediction": self.prediction.to_json() if self.prediction else None,
            "outputs": [o.to_json() for o in self.outputs], "worker": self.worker,
        }
        if self.id is not None:
            out["id"] = self.id
        if self.label is not None:
            out["label"] = self.label
            out["label_score"] = finite_or_none(self.label_score)
        if self.box is not None:
            out["box"] = list(self.box)
        if self.baseline is not None:
            out["baseline"] = self.baseline
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ItemRecord:
        return cls(
            index=raw["index"],
            status=ItemStatus(raw["status"]),
            input=raw["input"],
            id=raw.get("id"),
            error=raw.get("error"),
            prediction=Prediction.from_json(raw["prediction"]) if raw.get("prediction") else None,
            outputs=tuple(OutputRecord.from_json(o) for o in raw.get("outputs", ())),
            worker=raw.get("worker"),
            label=raw.get("label"),
            label_score=raw.get("label_score"),
            box=tuple(raw["box"]) if raw.get("box") else None,
            baseline=raw.get("baseline"),
        )


@dataclass(frozen=True)
class InputSource:
    """Where a worker reads one input, and what the data set says about it.

    `key` names an object in the configured storage; `uri` one under a data-set root; `part`
    a sample or row inside a larger object (a WebDataset shard, a Parquet or Arrow file),
    whose label and box are read with it. `name` is what `/items` shows as the item's `input`.
    """

    name: str
    key: str | None = None
    uri: str | None = None
    id: str | None = None
    label: int | str | None = None  # a class index, or a name resolved against class_names
    box: tuple[int, int, int, int] | None = None
    mask: str | None = None  # URI of a PNG the size of the image
    error: str | None = None  # a manifest line that could not be read fails its item
    part: Part | None = None
    objects: ImageObjects | None = None  # what the data set's annotations say of the image

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for name in ("key", "uri", "id", "label", "mask", "error"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.box is not None:
            out["box"] = list(self.box)
        if self.part is not None:
            out["part"] = self.part.to_json()
        if self.objects is not None:
            out["objects"] = self.objects.to_json()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> InputSource:
        return cls(
            name=raw["name"], key=raw.get("key"), uri=raw.get("uri"), id=raw.get("id"),
            label=raw.get("label"), box=tuple(raw["box"]) if raw.get("box") else None,
            mask=raw.get("mask"), error=raw.get("error"),
            part=Part.from_json(raw["part"]) if raw.get("part") else None,
            objects=ImageObjects.from_json(raw["objects"]) if raw.get("objects") else None,
        )
