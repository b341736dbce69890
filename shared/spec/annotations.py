"""Object annotations of a data set: the `dataset.annotations` spec, COCO's and VOC's boxes
in the service's convention, categories mapped to model classes, and `ImageObjects`, what
the planner writes into an item's plan line.

    {"coco": "s3://b/annotations/instances_val2017.json", "category_map": {"18": "dog"}}
    {"voc": "s3://b/VOC2012/Annotations/", "key": "id"}

Boxes are `[x0, y0, x1, y1]` in the image's pixels after EXIF orientation, end exclusive
(docs/api.md). COCO's `[x, y, w, h]` (float, top-left origin) becomes `[floor x, floor y,
ceil(x + w), ceil(y + h)]`; VOC's 1-based inclusive corners become `[xmin − 1, ymin − 1,
xmax, ymax]`. The files are read by the planner (`worker.jobs.annotation_index`); this module
only describes and validates, and imports nothing beyond the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SpecError
from shared.jsonio import integer
from shared.spec.inputs import parse_uri
from shared.spec.model import ModelSpec

FORMATS = ("coco", "voc")
KEYS = ("file_name", "id")
OBJECTS = ("boxes", "masks")
MAX_CATEGORY_MAP = 100_000
MAX_NAME_CHARS = 256

Box = tuple[int, int, int, int]


class AnnotationError(ValueError):
    """An annotation that cannot be read: its item fails with this message."""


@dataclass(frozen=True)
class AnnotationsSpec:
    """`{"coco": uri}` or `{"voc": prefix}`, how items are joined to them (`key`), which
    category is which model class (`category_map`), and, for COCO, whether an object is its
    box or its mask (`objects`)."""

    coco: str | None = None
    voc: str | None = None
    key: str = "file_name"
    category_map: dict[str, int | str] | None = None
    objects: str = "boxes"

    @property
    def uri(self) -> str:
        return self.coco or self.voc or ""

    @property
    def field(self) -> str:
        return "dataset.annotations.coco" if self.coco else "dataset.annotations.voc"

    def check_classes(self, model: ModelSpec) -> None:
        """Each `category_map` value must be a class of the model (a class index or one of
        its class names), or the objects it names could never be any item's."""
        for name, cls in (self.category_map or {}).items():
            if model.class_index(cls) is None:
                known = (f"it has {model.num_classes}: 0 to {model.num_classes - 1}"
                         + (", or their names" if model.class_names else ", and no names"))
                raise SpecError(f"dataset.annotations.category_map.{name[:40]}",
                                f"{cls!r} is not a class of model {model.name!r} ({known})")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"coco": self.coco} if self.coco else {"voc": self.voc}
        out["key"] = self.key
        if self.coco:
            out["objects"] = self.objects
        if self.category_map:
            out["category_map"] = dict(self.category_map)
        return out


def _category_class(raw: Any, where: str) -> int | str:
    if isinstance(raw, str) and 0 < len(raw) <= MAX_NAME_CHARS:
        return raw
    return integer(raw, where)


def parse_annotations(raw: Any) -> AnnotationsSpec:
    """The `annotations` field of a `dataset`; a SpecError naming the field otherwise."""
    where = "dataset.annotations"
    if not isinstance(raw, dict) or len(set(raw) & set(FORMATS)) != 1:
        raise SpecError(where, 'must be {"coco": uri of an instances JSON} or {"voc": prefix '
                               "of Annotations/*.xml}, with optional key and category_map")
    fmt = "coco" if "coco" in raw else "voc"
    allowed = {fmt, "key", "category_map"} | ({"objects"} if fmt == "coco" else set())
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(f"{where}.{sorted(map(str, unknown))[0][:40]}",
                        f"is not a field of {fmt} annotations (they take {sorted(allowed)})")
    uri = parse_uri(raw[fmt], f"{where}.{fmt}")
    key = raw.get("key", "file_name")
    if key not in KEYS:
        raise SpecError(f"{where}.key", f"must be one of {list(KEYS)}")
    objects = raw.get("objects", "boxes")
    if objects not in OBJECTS:
        raise SpecError(f"{where}.objects", f"must be one of {list(OBJECTS)}")
    category_map = raw.get("category_map")
    if category_map is not None:
        if not isinstance(category_map, dict) or not 0 < len(category_map) <= MAX_CATEGORY_MAP:
            raise SpecError(f"{where}.category_map", "must map category names (or COCO "
                                                     "category ids) to class indices or names")
        category_map = {str(k): _category_class(v, f"{where}.category_map.{str(k)[:40]}")
                        for k, v in category_map.items()}
    return AnnotationsSpec(coco=uri if fmt == "coco" else None,
                           voc=uri if fmt == "voc" else None, key=key,
                           category_map=category_map, objects=objects)


def _finite(value: Any, what: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise AnnotationError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def coco_box(bbox: Any) -> Box:
    """COCO's `[x, y, w, h]` as `[floor x, floor y, ceil(x + w), ceil(y + h)]`."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise AnnotationError(f"bbox must be [x, y, width, height], got {bbox!r}")
    x, y, w, h = (_finite(v, "bbox") for v in bbox)
    if w <= 0 or h <= 0:
        raise AnnotationError(f"bbox {list(bbox)} has no area (its width and height must be "
                              "positive)")
    return (math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h))


def voc_box(xmin: Any, ymin: Any, xmax: Any, ymax: Any) -> Box:
    """VOC's 1-based inclusive corners as `[xmin − 1, ymin − 1, xmax, ymax]` (fractional
    corners, which some tools write, widen to whole pixels)."""
    x0, y0, x1, y1 = (_finite(v, "bndbox") for v in (xmin, ymin, xmax, ymax))
    if x1 < x0 or y1 < y0:
        raise AnnotationError(f"bndbox ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs xmin <= xmax "
                              "and ymin <= ymax")
    return (math.floor(x0) - 1, math.floor(y0) - 1, math.ceil(x1), math.ceil(y1))


class CategoryClasses:
    """Which model class an annotation category is: `category_map` by the category's name,
    then (COCO) by its id; else the class of the same name; else none (the category's
    objects are nobody's)."""

    def __init__(self, spec: AnnotationsSpec, model: ModelSpec) -> None:
        self.map = spec.category_map or {}
        self.model = model

    def of(self, name: str, category_id: int | None = None) -> int | None:
        cls = self.map.get(name)
        if cls is None and category_id is not None:
            cls = self.map.get(str(category_id))
        return self.model.class_index(name if cls is None else cls)

    def unknown_keys(self, names: set[str], ids: set[int]) -> list[str]:
        """The `category_map` keys that name no category among `names` and `ids`."""
        return sorted(k for k in self.map if k not in names and not (
            k.isascii() and k.isdecimal() and int(k) in ids))


@dataclass(frozen=True)
class ImageObjects:
    """What the annotations say of one item's image: where it was read (`source`), the
    image's annotated (width, height), and its objects by model class: boxes, or for COCO
    masks one compressed RLE (pycocotools' `counts`) per class, the union of its objects.
    `found` is False when the annotations have no entry for the image."""

    source: str
    size: tuple[int, int] | None = None
    boxes: dict[int, tuple[Box, ...]] = field(default_factory=dict)
    masks: dict[int, str] = field(default_factory=dict)
    found: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if not self.found:
            out["found"] = False
        if self.size is not None:
            out["size"] = list(self.size)
        if self.boxes:
            out["boxes"] = {str(c): [list(b) for b in boxes] for c, boxes in self.boxes.items()}
        if self.masks:
            out["masks"] = {str(c): rle for c, rle in self.masks.items()}
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ImageObjects:
        return cls(
            source=raw["source"], size=tuple(raw["size"]) if raw.get("size") else None,
            boxes={int(c): tuple(tuple(b) for b in boxes)
                   for c, boxes in raw.get("boxes", {}).items()},
            masks={int(c): rle for c, rle in raw.get("masks", {}).items()},
            found=raw.get("found", True),
        )

    def has_class(self, cls: int) -> bool:
        return cls in self.boxes or cls in self.masks
