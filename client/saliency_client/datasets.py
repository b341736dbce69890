"""Data sets as job inputs: the `dataset` spec, and the files of a local folder to upload.

    Dataset(prefix="s3://bucket/pets/", labels="folder-sorted")    # an ImageFolder tree
    Dataset(manifest="s3://bucket/pets/manifest.jsonl")             # one {"uri", ...} a line
    Dataset(webdataset="s3://bucket/pets/shard-{000000..000099}.tar")  # WebDataset shards
    Dataset(huggingface="s3://bucket/pets-hf/", split="validation")   # Parquet or save_to_disk
    Dataset(prefix="s3://bucket/coco/val2017/",                     # with objects to audit
            annotations=Annotations(coco="s3://bucket/coco/instances_val2017.json",
                                    category_map={"18": "dog"}))

Pure functions shared by the sync and async clients and the `saliency audit` command.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".npy")  # what a prefix job reads
LABEL_MODES = ("folder", "folder-sorted")
ANNOTATION_KEYS = ("file_name", "id")
ANNOTATION_OBJECTS = ("boxes", "masks")
MAX_BATCH_BYTES = 16 * 1024 * 1024  # per upload request; a batch the API finds too large is split
TOO_LARGE = 413


FORMATS = ("manifest", "prefix", "webdataset", "huggingface")


@dataclass(frozen=True)
class Annotations:
    """Where a data set's objects are, for the audit's box metrics: a COCO instances file
    (`coco`) or a prefix of Pascal VOC XML files (`voc`), joined to the items by `key`
    (`file_name` or `id`), with `category_map` from annotation categories (names, or COCO
    category ids) to model classes (indices or names); COCO `objects` are `boxes` or
    `masks`. docs/api.md has the rules."""

    coco: str | None = None
    voc: str | None = None
    key: str | None = None
    category_map: dict[str, int | str] | None = None
    objects: str | None = None

    def __post_init__(self) -> None:
        if (self.coco is None) == (self.voc is None):
            raise ValueError("annotations are a COCO file or a VOC prefix (one of them)")
        if self.key is not None and self.key not in ANNOTATION_KEYS:
            raise ValueError(f"key must be one of {list(ANNOTATION_KEYS)}, got {self.key!r}")
        if self.objects is not None and (self.voc is not None
                                         or self.objects not in ANNOTATION_OBJECTS):
            raise ValueError(f"objects is one of {list(ANNOTATION_OBJECTS)}, for COCO "
                             f"annotations only; got {self.objects!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"coco": self.coco} if self.coco is not None else {
            "voc": self.voc}
        for name in ("key", "objects"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.category_map is not None:
            out["category_map"] = dict(self.category_map)
        return out


@dataclass(frozen=True)
class Dataset:
    """A data set a job reads in place: a JSONL `manifest`; every image under a `prefix`
    (with `labels` from the parent folder's name); WebDataset shards (`webdataset`: a prefix
    or a brace pattern of `.tar` files, labels from each sample's `label_field` member or
    JSON field); or a Hugging Face data set (`huggingface`: Parquet files of a `split`, or a
    `save_to_disk` folder, with its `image_column` and `label_column`). `label_map` maps
    label names to class indices (not for a manifest). A manifest or a prefix takes
    `annotations` (an `Annotations`, or its JSON)."""

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
    annotations: Annotations | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        given = [name for name in FORMATS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a data set is a manifest, a prefix, webdataset shards or a "
                             f"huggingface data set (one of them), got {given or 'none'}")
        if self.labels is not None and self.labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {list(LABEL_MODES)}, got {self.labels!r}")
        allowed = {"manifest": {"annotations"}, "prefix": {"labels", "label_map", "annotations"},
                   "webdataset": {"label_field", "label_map"},
                   "huggingface": {"split", "image_column", "label_column", "label_map"}}
        extra = [name for name in ("labels", "label_map", "label_field", "split",
                                   "image_column", "label_column", "annotations")
                 if getattr(self, name) is not None and name not in allowed[given[0]]]
        if extra:
            raise ValueError(f"a {given[0]} data set takes no {', '.join(extra)}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in (*FORMATS, "labels", "label_field", "split", "image_column",
                     "label_column"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.label_map is not None:
            out["label_map"] = dict(self.label_map)
        if self.annotations is not None:
            out["annotations"] = (self.annotations.to_json() if isinstance(
                self.annotations, Annotations) else dict(self.annotations))
        return out


@dataclass
class Uploaded:
    """What `upload` stored: the prefix to name in a data-set job, and each file's URI."""

    prefix: str
    uris: list[str] = field(default_factory=list)

    def dataset(self, labels: str | None = None, label_map: dict[str, int] | None = None,
                annotations: Annotations | dict[str, Any] | None = None) -> Dataset:
        """The uploaded folder as a prefix data set."""
        return Dataset(prefix=self.prefix, labels=labels, label_map=label_map,
                       annotations=annotations)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_files(folder: str | Path) -> list[tuple[str, Path]]:
    """Every image under `folder` as (path relative to it, with `/`; the file), sorted by
    name. Hidden files and folders (`.git`, `.ipynb_checkpoints`) are left out."""
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and is_image(name):
                path = Path(dirpath, name)
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def named_files(files: Any, root: str | Path | None = None) -> list[tuple[str, Path]]:
    """`upload`'s files as (name, path): a folder's images named relative to it, or the
    paths given, named relative to `root` (default: their file names)."""
    if isinstance(files, (str, Path)) and Path(files).is_dir():
        return image_files(files)
    if isinstance(files, (str, Path)):
        files = [files]
    out = []
    for value in files:
        path = Path(value)
        name = path.relative_to(root).as_posix() if root is not None else path.name
        out.append((name, path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError("two files would have the same name; pass root= to name them by "
                         "their path relative to a folder")
    return out


def listing_digest(files: Iterable[tuple[str, Path]]) -> str:
    """A digest of the names, sizes and modification times: equal when nothing changed."""
    digest = hashlib.sha256()
    for name, path in files:
        st = path.stat()
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def batches(files: list[tuple[str, Path]], batch_size: int,
            max_bytes: int) -> Iterator[list[tuple[str, Path]]]:
    """Consecutive batches of at most `batch_size` files and (beyond one file) `max_bytes`."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batch: list[tuple[str, Path]] = []
    size = 0
    for name, path in files:
        length = path.stat().st_size
        if batch and (len(batch) >= batch_size or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((name, path))
        size += length
    if batch:
        yield batch


def upload_parts(batch: list[tuple[str, Path]],
                 prefix: str | None) -> tuple[dict[str, str], list[Any]]:
    """`(data, files)` of one `POST /v1/uploads`: `files` parts named by relative path."""
    files = [("files", (name, path.read_bytes(),
                        mimetypes.guess_type(name)[0] or "application/octet-stream"))
             for name, path in batch]
    return ({"prefix": prefix} if prefix else {}), files
