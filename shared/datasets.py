"""Data sets as job inputs: the `dataset` spec, inline inputs with labels and boxes, manifest
lines, and the places a job may read (the configured storage and `SALIENCY_DATASET_ROOTS`).

Pure Python: the API validates a data set here and checks that it exists; the planner
(`worker.plans`) streams the manifest or the listing with the same functions.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from shared.annotations import AnnotationsSpec, parse_annotations
from shared.errors import SpecError
from shared.inputs import parse_uri
from shared.jsonio import integer, loads
from shared.modelspec import ModelSpec
from shared.records import InputSource

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".npy")
LABEL_MODES = ("folder", "folder-sorted")
MAX_ID_CHARS = 512
MAX_LABEL_MAP = 100_000


@dataclass(frozen=True)
class DatasetSpec:
    """`{"manifest": uri}` or `{"prefix": uri, "labels": "folder"|"folder-sorted", ...}`,
    either with optional `annotations` (`shared.annotations`)."""

    manifest: str | None = None
    prefix: str | None = None
    labels: str | None = None
    label_map: dict[str, int] | None = None
    annotations: AnnotationsSpec | None = None

    @property
    def uri(self) -> str:
        return self.manifest or self.prefix or ""

    @property
    def field(self) -> str:
        return "dataset.manifest" if self.manifest else "dataset.prefix"

    def check_classes(self, model: ModelSpec) -> None:
        """Each `label_map` value must be a class of the model (known at submission), or
        every item labelled by it would fail."""
        for name, index in (self.label_map or {}).items():
            if model.class_index(index) is None:
                raise SpecError(f"dataset.label_map.{name[:40]}",
                                f"{index} is not a class of model {model.name!r} (it has "
                                f"{model.num_classes}: 0 to {model.num_classes - 1})")
        if self.annotations is not None:
            self.annotations.check_classes(model)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manifest": self.manifest} if self.manifest else {
            "prefix": self.prefix}
        if self.labels:
            out["labels"] = self.labels
        if self.label_map:
            out["label_map"] = self.label_map
        if self.annotations is not None:
            out["annotations"] = self.annotations.to_json()
        return out


def parse_dataset(raw: Any) -> DatasetSpec:
    if not isinstance(raw, dict):
        raise SpecError("dataset", 'must be {"manifest": uri} or {"prefix": uri, ...}')
    annotations = parse_annotations(raw["annotations"]) if "annotations" in raw else None
    keys = set(raw) - {"annotations"}
    if "manifest" in keys:
        if keys != {"manifest"}:
            raise SpecError("dataset", "a manifest takes no other field than annotations, got "
                                       f"{sorted(keys)}")
        return DatasetSpec(manifest=parse_uri(raw["manifest"], "dataset.manifest"),
                           annotations=annotations)
    if "prefix" not in keys or keys - {"prefix", "labels", "label_map"}:
        raise SpecError("dataset", 'must be {"manifest": uri} or {"prefix": uri, "labels": '
                                   '"folder", "label_map": {...}}')
    prefix = parse_uri(raw["prefix"], "dataset.prefix")
    if not urlparse(prefix).path.strip("/"):
        raise SpecError("dataset.prefix", "must name a folder, not the whole bucket or disk")
    labels = raw.get("labels")
    if labels is not None and labels not in LABEL_MODES:
        raise SpecError("dataset.labels", f"must be one of {list(LABEL_MODES)}")
    label_map = raw.get("label_map")
    if label_map is not None:
        if not isinstance(label_map, dict) or len(label_map) > MAX_LABEL_MAP:
            raise SpecError("dataset.label_map", "must map folder names to class indices")
        label_map = {str(k): integer(v, f"dataset.label_map.{k}") for k, v in label_map.items()}
        if labels is None:
            raise SpecError("dataset.label_map", 'needs "labels": "folder"')
    return DatasetSpec(prefix=prefix, labels=labels, label_map=label_map,
                       annotations=annotations)


def _box(raw: Any, where: str) -> tuple[int, int, int, int]:
    if not isinstance(raw, list) or len(raw) != 4:
        raise SpecError(where, "must be [x0, y0, x1, y1] in the image's pixels")
    x0, y0, x1, y1 = (integer(v, where) for v in raw)
    if x1 <= x0 or y1 <= y0:
        raise SpecError(where, "must have x0 < x1 and y0 < y1 (the end is exclusive)")
    return (x0, y0, x1, y1)


def _label(raw: Any, where: str) -> int | str:
    if isinstance(raw, str) and 0 < len(raw) <= 256:
        return raw
    return integer(raw, where)


def parse_entry(raw: Any, where: str, base: str | None = None) -> InputSource:
    """One input with optional `id`, `label`, `box` and `mask`: an inline input or a manifest
    line. Relative URIs resolve against `base` (the manifest's folder)."""
    if not isinstance(raw, dict) or "uri" not in raw:
        raise SpecError(where, 'must be an object {"uri": ...} (with optional id, label, box, '
                               "mask)")
    unknown = set(raw) - {"uri", "id", "label", "box", "mask"}
    if unknown:
        raise SpecError(f"{where}.{sorted(map(str, unknown))[0][:40]}", "is not an input field")
    uri = resolve(parse_uri(raw["uri"], f"{where}.uri"), base, f"{where}.uri")
    item_id = raw.get("id")
    if item_id is not None and (not isinstance(item_id, str) or len(item_id) > MAX_ID_CHARS):
        raise SpecError(f"{where}.id", f"must be a string of at most {MAX_ID_CHARS} characters")
    mask = raw.get("mask")
    if mask is not None:
        mask = resolve(parse_uri(mask, f"{where}.mask"), base, f"{where}.mask")
    return InputSource(
        name=uri, uri=uri, id=item_id,
        label=_label(raw["label"], f"{where}.label") if raw.get("label") is not None else None,
        box=_box(raw["box"], f"{where}.box") if raw.get("box") is not None else None,
        mask=mask,
    )


def resolve(uri: str, base: str | None, where: str) -> str:
    """`uri` if absolute, else joined to the folder `base`; `..` is refused either way."""
    parsed = urlparse(uri)
    if any(part == ".." for part in parsed.path.split("/")):
        raise SpecError(where, "must not contain '..'")
    if parsed.scheme:
        return uri
    if base is None:
        raise SpecError(where, "must be an absolute URI (s3://… or file:///…)")
    return posixpath.join(base, uri)


def parse_inline_inputs(raw: Any, limit: int) -> tuple[InputSource, ...]:
    """The `inputs` of a JSON job: `{"uri"}` objects, each with optional id/label/box/mask."""
    if not isinstance(raw, list) or not raw:
        raise SpecError("inputs", 'must be a non-empty list of {"uri": ...} objects')
    if len(raw) > limit:
        from shared.errors import TooLargeError

        raise TooLargeError(f"inputs: {len(raw)} inputs exceed the limit of {limit}")
    return tuple(parse_entry(entry, f"inputs[{i}]") for i, entry in enumerate(raw))


def parse_manifest_line(line: str, number: int, base: str) -> InputSource:
    """Manifest line `number` (0-based over non-empty lines); a bad line fails its item."""
    where = f"manifest line {number + 1}"
    try:
        # Strict JSON, as for a request: no NaN, bounded nesting (a line of 100,000 `[`
        # would otherwise raise RecursionError in the planner, again at every retry).
        raw = loads(line, where)
        return parse_entry(raw, where, base)
    except SpecError as e:
        return InputSource(name=f"{where}", error=e.message)


def long_manifest_line(number: int, size: int, limit: int) -> InputSource:
    """Manifest line `number` (0-based) of `size` bytes, longer than the cap: its item fails."""
    where = f"manifest line {number + 1}"
    return InputSource(name=where, error=SpecError(
        where, f"is {size} bytes, longer than the limit of {limit} bytes per line "
               "(SALIENCY_MAX_MANIFEST_LINE_BYTES)").message)


def folder_label(key: str, prefix_key: str) -> str | None:
    """The parent folder's name of `key` (the ImageFolder layout), or None at the top."""
    rel = key[len(prefix_key):].strip("/")
    parent = posixpath.dirname(rel)
    return posixpath.basename(parent) if parent else None


def is_image_key(key: str) -> bool:
    return key.lower().endswith(IMAGE_EXTENSIONS)
