"""An attribution job as a FiftyOne dataset on disk (`fiftyone.types.FiftyOneDataset`), written
without FiftyOne: the shapes of FiftyOne 1.22's `FiftyOneDatasetExporter`
(fiftyone/utils/data/exporters.py), which its `FiftyOneDatasetImporter` reads back.

- `metadata.json`: the dataset document: media type `image`, the schema of every sample
  field (`sample_fields`, as `SampleFieldDocument.from_field` writes them), the classes and
  the job in `info`. The importer stores it as the dataset's document.
- `samples.json`: `{"samples": [...]}`, one document per item in MongoDB extended JSON
  (`{"$oid": ...}` ids); relative paths are joined to the folder on import.
- `data/<index>.<ext>`: each item's input; `fields/<field>/<index>.png`: each map as a
  `Heatmap` (`map_path`), with the raw map beside it as `<index>.npy`. The importer joins
  the `map_path` of every field that has a folder under `fields/` to the folder.

A heatmap is the channel-reduced map (the job's `reduce`, non-negative) as a 16-bit grey PNG:
pixel = round(value / top · 65535). `range` is [0, 65535], the range of the pixels, as
FiftyOne reads it to colour a map; `value_range` [0, top] is what they stand for, so
value = pixel / 65535 · top. Ids are derived from the job, so exporting a job twice gives
the same documents.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.media.render import encode_png
from shared.results.records import ItemRecord, OutputRecord, finite_or_none
from shared.results.table import METRICS
from shared.status import ItemStatus

FORMAT_VERSION = "1.22.1"  # the FiftyOne version whose format this writes
HEATMAP_LEVELS = 65535
_FIELDS = "fiftyone.core.fields."
_LABEL_TYPES = {"classification": "fiftyone.core.labels.Classification",
                "heatmap": "fiftyone.core.labels.Heatmap"}
_PLAIN = {"int": "IntField", "float": "FloatField", "bool": "BooleanField", "str": "StringField"}


def _field(name: str, ftype: str, *, db_field: str | None = None, subfield: str | None = None,
           embedded: str | None = None, fields: Iterable[dict] = (),
           read_only: bool = False) -> dict[str, Any]:
    """One field's schema, as `SampleFieldDocument.to_dict()` gives it."""
    return {"name": name, "ftype": _FIELDS + ftype, "embedded_doc_type": embedded,
            "subfield": _FIELDS + subfield if subfield else None, "fields": list(fields),
            "db_field": db_field or name, "description": None, "info": None,
            "read_only": read_only, "created_at": None}


def _label_fields(*own: dict[str, Any]) -> list[dict[str, Any]]:
    return [_field("id", "ObjectIdField", db_field="_id"),
            _field("tags", "ListField", subfield="StringField"), *own]


_LABEL_SCHEMAS = {
    "classification": _label_fields(_field("label", "StringField"),
                                    _field("confidence", "FloatField"),
                                    _field("logits", "VectorField")),
    "heatmap": _label_fields(_field("map", "ArrayField"), _field("map_path", "StringField"),
                             _field("range", "HeatmapRangeField", subfield="FloatField"),
                             _field("value_range", "ListField", subfield="FloatField")),
}


def field_schema(name: str, kind: str) -> dict[str, Any]:
    """The schema of a sample field of one of the kinds the export writes: `int`, `float`,
    `bool`, `str`, `strings` (a list), `classification` or `heatmap`."""
    if kind in _PLAIN:
        return _field(name, _PLAIN[kind])
    if kind == "strings":
        return _field(name, "ListField", subfield="StringField")
    return _field(name, "EmbeddedDocumentField", embedded=_LABEL_TYPES[kind],
                  fields=_LABEL_SCHEMAS[kind])


def default_fields() -> list[dict[str, Any]]:
    """The fields every sample of an image dataset has."""
    image_metadata = [_field("size_bytes", "IntField"), _field("mime_type", "StringField"),
                      _field("width", "IntField"), _field("height", "IntField"),
                      _field("num_channels", "IntField")]
    return [
        _field("id", "ObjectIdField", db_field="_id"),
        _field("filepath", "StringField"),
        _field("tags", "ListField", subfield="StringField"),
        _field("metadata", "EmbeddedDocumentField",
               embedded="fiftyone.core.metadata.ImageMetadata", fields=image_metadata),
        _field("created_at", "DateTimeField", read_only=True),
        _field("last_modified_at", "DateTimeField", read_only=True),
        _field("_media_type", "StringField"),
        _field("_rand", "FloatField"),
        _field("_dataset_id", "ObjectIdField"),
    ]


@dataclass
class Schema:
    """The sample fields in the order they first appear, each with its kind."""

    kinds: dict[str, str] = field(default_factory=dict)

    def declare(self, name: str, kind: str) -> None:
        known = self.kinds.setdefault(name, kind)
        if known != kind:
            raise ValueError(f"sample field {name!r} is both {known} and {kind}")

    def documents(self) -> list[dict[str, Any]]:
        return default_fields() + [field_schema(n, k) for n, k in self.kinds.items()]


def dataset_document(name: str, schema: Schema, classes: list[str],
                     info: dict[str, Any]) -> dict[str, Any]:
    """`metadata.json`: the dataset's document, as the exporter writes it (runs, views and
    workspaces empty)."""
    return {
        "name": name, "slug": name, "version": FORMAT_VERSION, "persistent": False,
        "media_type": "image", "group_media_types": {}, "tags": [], "info": info,
        "app_config": {"dynamic_groups_target_frame_rate": 30, "grid_media_field": "filepath",
                       "media_fallback": False, "media_fields": ["filepath"],
                       "modal_media_field": "filepath", "plugins": {}},
        "classes": {}, "default_classes": classes, "mask_targets": {},
        "default_mask_targets": {}, "skeletons": {}, "camera_intrinsics": {},
        "static_transforms": {}, "sample_fields": schema.documents(), "frame_fields": [],
        "saved_views": [], "workspaces": [], "annotation_runs": {}, "brain_methods": {},
        "evaluations": {}, "runs": {}, "active_label_schemas": [], "label_schemas": {},
        "frame_label_schemas": {},
    }


def output_field(output: OutputRecord) -> str:
    """The sample field of an output's map: `{method}_{position}`, and `_r{rank}` for a
    top-k target's rank (`gradient_0`, `gradcam_1_r2`); its figures are `{field}_{name}`."""
    rank = "" if output.rank is None else f"_r{output.rank}"
    return f"{output.method}_{output.position}{rank}"


def heatmap_png(map2d: np.ndarray) -> tuple[bytes, float]:
    """A non-negative H×W map as a 16-bit grey PNG, and the value its top level stands for
    (its largest finite value; 0 for a map without one, drawn all zero)."""
    values = np.nan_to_num(np.asarray(map2d, dtype=np.float64), nan=0.0, posinf=0.0,
                           neginf=0.0).clip(0, None)
    top = float(values.max()) if values.size else 0.0
    scale = HEATMAP_LEVELS / top if top > 0 else 0.0
    pixels = np.rint(values * scale).astype(np.uint16)
    return encode_png(pixels), top


@dataclass(frozen=True)
class ReportIndex:
    """What the export reads of a job's report: each suspect by item, and each clustered
    map's cluster by (item, method position)."""

    suspects: dict[int, dict[str, Any]]
    clusters: dict[tuple[int, int], int]

    @classmethod
    def of(cls, report: dict[str, Any]) -> ReportIndex:
        clusters = {}
        for group in report.get("clusters") or ():
            for number, cluster in enumerate(group["clusters"]):
                for member in cluster["members"]:
                    clusters[(member, group["position"])] = number
        return cls({s["index"]: s for s in report.get("suspects") or ()}, clusters)


@dataclass(frozen=True)
class Ids:
    """ObjectIds and `_rand` values derived from the job, so that an export is repeatable:
    the job's creation time, then 8 bytes of a hash of the job, the item and the field."""

    job_id: str
    created: float

    def _digest(self, *parts: Any) -> bytes:
        text = "\0".join(str(p) for p in (self.job_id, *parts))
        return hashlib.blake2b(text.encode(), digest_size=8).digest()

    def object_id(self, *parts: Any) -> dict[str, str]:
        return {"$oid": (struct.pack(">I", int(self.created)) + self._digest(*parts)).hex()}

    def rand(self, index: int) -> float:
        """A sample's `_rand` (FiftyOne's own are uniform in [0.999, 1))."""
        unit = int.from_bytes(self._digest("rand", index), "big") / 2.0 ** 64
        return 0.999 + 0.001 * unit


@dataclass(frozen=True)
class Heatmap:
    """An output's map file in the export and the value its top level stands for."""

    path: str
    top: float


def _label(ids: Ids, index: int, name: str, kind: str, **values: Any) -> dict[str, Any]:
    return {"_id": ids.object_id(index, name), "_cls": kind, "tags": [], **values}


@dataclass
class SampleWriter:
    """Builds each item's sample document and declares the fields it uses."""

    ids: Ids
    class_name: Callable[[int], str | None]
    report: ReportIndex
    schema: Schema = field(default_factory=Schema)

    def _set(self, doc: dict[str, Any], name: str, kind: str, value: Any) -> None:
        if value is None:
            return
        self.schema.declare(name, kind)
        doc[name] = value

    def _name(self, cls: int) -> str:
        name = self.class_name(cls)
        return str(cls) if name is None else name

    def sample(self, record: ItemRecord, filepath: str,
               heatmaps: dict[str, Heatmap]) -> dict[str, Any]:
        """The sample of an item: its input at `filepath`, its maps in `heatmaps` by field."""
        i = record.index
        suspect = self.report.suspects.get(i)
        tags = [] if record.status == ItemStatus.SUCCEEDED else [record.status.value]
        doc: dict[str, Any] = {"_id": self.ids.object_id(i), "filepath": filepath,
                               "tags": tags, "metadata": None, "_media_type": "image",
                               "_rand": self.ids.rand(i)}
        self._set(doc, "index", "int", i)
        self._set(doc, "item_id", "str", record.id if record.id is not None else record.input)
        self._set(doc, "uri", "str", record.input)
        self._set(doc, "status", "str", record.status.value)
        self._set(doc, "error", "str", record.error)
        pred = record.prediction
        if pred is not None:
            self._set(doc, "prediction", "classification", _label(
                self.ids, i, "prediction", "Classification",
                label=pred.label or self._name(pred.cls), confidence=finite_or_none(pred.score)))
        if record.label is not None:
            self._set(doc, "ground_truth", "classification", _label(
                self.ids, i, "ground_truth", "Classification", label=self._name(record.label)))
            self._set(doc, "label_score", "float", finite_or_none(record.label_score))
            self._set(doc, "correct", "bool", record.correct)
        for out in record.outputs:
            self._output(doc, i, out, heatmaps.get(output_field(out)))
        if suspect is not None:
            self._set(doc, "suspect_score", "float", suspect["score"])
            self._set(doc, "suspect_reasons", "strings", list(suspect["reasons"]) or None)
        return doc

    def _output(self, doc: dict[str, Any], index: int, out: OutputRecord,
                heatmap: Heatmap | None) -> None:
        name = output_field(out)
        if heatmap is not None:
            self._set(doc, name, "heatmap", _label(
                self.ids, index, name, "Heatmap", map_path=heatmap.path,
                range=[0.0, float(HEATMAP_LEVELS)], value_range=[0.0, heatmap.top]))
        self._set(doc, f"{name}_target", "str", json.dumps(out.target, separators=(",", ":")))
        metrics = out.metrics or {}
        for metric in METRICS:
            value = metrics.get(metric)
            if isinstance(value, bool):
                self._set(doc, f"{name}_{metric}", "bool", value)
            else:
                self._set(doc, f"{name}_{metric}", "float", finite_or_none(value))
        self._set(doc, f"{name}_convergence_delta", "float",
                  finite_or_none(out.convergence_delta))
        if out.warnings:
            self._set(doc, f"{name}_warnings", "strings", list(out.warnings))
        if out.leading:
            self._set(doc, f"{name}_cluster", "int",
                      self.report.clusters.get((index, out.position)))
