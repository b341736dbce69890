"""Data sets as job inputs: the `dataset` spec, inline inputs with labels and boxes, manifest
lines, and the places a job may read (the configured storage and `SALIENCY_DATASET_ROOTS`).
A data set is a manifest, a prefix of image files, WebDataset shards (`shared.storage.webdataset`)
or a Hugging Face data set (`shared.storage.hfdatasets`).

Pure Python: the API validates a data set here and checks that it exists; the planner
(`worker.jobs.plans`) streams the manifest or the listing with the same functions.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from shared.errors import SpecError
from shared.jsonio import integer, loads
from shared.results.records import InputSource
from shared.spec.annotations import AnnotationsSpec, parse_annotations
from shared.spec.inputs import parse_uri
from shared.spec.model import ModelSpec
from shared.storage.webdataset import parse_label_field, shard_count

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".npy")
LABEL_MODES = ("folder", "folder-sorted")
MAX_ID_CHARS = 512
MAX_LABEL_MAP = 100_000


@dataclass(frozen=True)
class DatasetSpec:
    """`{"manifest": uri}`, `{"prefix": uri, "labels": "folder"|"folder-sorted", ...}`,
    `{"webdataset": pattern, "label_field": ...}` or `{"huggingface": uri, "split": ...,
    "image_column": ..., "label_column": ...}`; `label_map` maps label names to classes.
    A manifest or a prefix may have `annotations` (`shared.spec.annotations`)."""

    manifest: str | None = None
    prefix: str | None = None
    labels: str | None = None
    label_map: dict[str, int] | None = None
    webdataset: str | None = None
    label_field: str | None = None
    huggingface: str | None = None
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    annotations: AnnotationsSpec | None = None

    @property
    def uri(self) -> str:
        return self.manifest or self.prefix or self.webdataset or self.huggingface or ""

    @property
    def field(self) -> str:
        return f"dataset.{self.format}"

    @property
    def format(self) -> str:
        """Which of the four kinds of data set this is, by its field's name."""
        return next(name for name in FORMATS if getattr(self, name))

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
        out: dict[str, Any] = {self.format: self.uri}
        for name in (*CONTAINER_FIELDS.get(self.format, ()), "labels", "label_map"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.annotations is not None:
            out["annotations"] = self.annotations.to_json()
        return out


FORMATS = ("manifest", "prefix", "webdataset", "huggingface")
# The fields a data set kept in a container format takes besides its own and `label_map`.
CONTAINER_FIELDS = {"webdataset": ("label_field",),
                    "huggingface": ("split", "image_column", "label_column")}
_SPLIT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def _label_map(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or len(raw) > MAX_LABEL_MAP:
        raise SpecError("dataset.label_map", "must map label names to class indices")
    return {str(k): integer(v, f"dataset.label_map.{k}") for k, v in raw.items()}


def _column(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= 256:
        raise SpecError(where, "must name a column (1 to 256 characters)")
    return raw


def _folder_uri(raw: Any, where: str) -> str:
    uri = parse_uri(raw, where)
    if not urlparse(uri).path.strip("/"):
        raise SpecError(where, "must name a folder, not the whole bucket or disk")
    return uri


def _parse_container(raw: dict[str, Any], kind: str) -> DatasetSpec:
    """A WebDataset or Hugging Face data set's fields, each checked and named if wrong."""
    if "annotations" in raw:
        raise SpecError("dataset.annotations", f"is read for a manifest or a prefix of image "
                                               f"files, not a {kind} data set: give the boxes "
                                               "and masks in the data set itself")
    unknown = set(raw) - {kind, *CONTAINER_FIELDS[kind], "label_map"}
    if unknown:
        raise SpecError(f"dataset.{sorted(unknown)[0][:40]}",
                        f"is not a field of a {kind} data set (it takes "
                        f"{', '.join([kind, *CONTAINER_FIELDS[kind], 'label_map'])})")
    where = f"dataset.{kind}"
    uri = _folder_uri(raw[kind], where)
    fields: dict[str, Any] = {kind: uri}
    if raw.get("label_map") is not None:
        fields["label_map"] = _label_map(raw["label_map"])
    if kind == "webdataset":
        shard_count(uri, where)
        if raw.get("label_field") is not None:
            fields["label_field"] = parse_label_field(raw["label_field"], "dataset.label_field")
        return DatasetSpec(**fields)
    split = raw.get("split")
    if split is not None and (not isinstance(split, str) or not _SPLIT.match(split)):
        raise SpecError("dataset.split", "must be a split's name such as \"validation\" "
                                         "(letters, digits, _ . -)")
    for name in ("image_column", "label_column"):
        if raw.get(name) is not None:
            fields[name] = _column(raw[name], f"dataset.{name}")
    return DatasetSpec(split=split, **fields)


def parse_dataset(raw: Any) -> DatasetSpec:
    if not isinstance(raw, dict):
        raise SpecError("dataset", 'must be {"manifest": uri}, {"prefix": uri, ...}, '
                                   '{"webdataset": pattern, ...} or {"huggingface": uri, ...}')
    given = [name for name in FORMATS if name in raw]
    if len(given) > 1:
        raise SpecError("dataset", f"give one of {', '.join(FORMATS)}, not {' and '.join(given)}")
    if given and given[0] in CONTAINER_FIELDS:
        return _parse_container(raw, given[0])
    annotations = parse_annotations(raw["annotations"]) if "annotations" in raw else None
    keys = set(raw) - {"annotations"}
    if "manifest" in keys:
        if keys != {"manifest"}:
            raise SpecError("dataset", "a manifest takes no other field than annotations, got "
                                       f"{sorted(keys)}")
        return DatasetSpec(manifest=parse_uri(raw["manifest"], "dataset.manifest"),
                           annotations=annotations)
    if "prefix" not in keys or keys - {"prefix", "labels", "label_map"}:
        raise SpecError("dataset", 'must be {"manifest": uri}, {"prefix": uri, "labels": '
                                   '"folder", "label_map": {...}}, {"webdataset": pattern} '
                                   'or {"huggingface": uri}')
    prefix = _folder_uri(raw["prefix"], "dataset.prefix")
    labels = raw.get("labels")
    if labels is not None and labels not in LABEL_MODES:
        raise SpecError("dataset.labels", f"must be one of {list(LABEL_MODES)}")
    label_map = raw.get("label_map")
    if label_map is not None:
        label_map = _label_map(label_map)
        if labels is None:
            raise SpecError("dataset.label_map", 'needs "labels": "folder"')
    return DatasetSpec(prefix=prefix, labels=labels, label_map=label_map,
                       annotations=annotations)


def parse_box(raw: Any, where: str) -> tuple[int, int, int, int]:
    if not isinstance(raw, list) or len(raw) != 4:
        raise SpecError(where, "must be [x0, y0, x1, y1] in the image's pixels")
    x0, y0, x1, y1 = (integer(v, where) for v in raw)
    if x1 <= x0 or y1 <= y0:
        raise SpecError(where, "must have x0 < x1 and y0 < y1 (the end is exclusive)")
    return (x0, y0, x1, y1)


def parse_label(raw: Any, where: str) -> int | str:
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
        label=(parse_label(raw["label"], f"{where}.label") if raw.get("label") is not None
               else None),
        box=parse_box(raw["box"], f"{where}.box") if raw.get("box") is not None else None,
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
