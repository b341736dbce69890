"""Joining a data set's items to their COCO or VOC annotations, once, at planning.

`annotation_index(ctx, job, spec)` reads the annotations once: a COCO file is copied to a
temporary file in ranged blocks (at most `SALIENCY_MAX_ANNOTATION_BYTES`) and read in three
streamed passes (`shared.spec.coco`); a VOC prefix is listed and each `.xml` read (LIST, then
one GET per file, `VOC_READERS` at a time; the same limit bounds their total). The objects
whose category is a class of the model go into a temporary SQLite index, keyed by file name
and by id, and `AnnotationIndex.join` gives each planned item its `ImageObjects`, which its
plan line then carries to the worker: memory stays a few SQLite pages whatever the size of
the annotations, and a chunk never reads them again. With `"objects": "masks"` each class's
objects (polygons, RLE, or boxes where there is no segmentation) are merged by pycocotools
into one compressed RLE, their union, which the worker decodes when the item runs.
"""

from __future__ import annotations

import json
import posixpath
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from shared.errors import InputError
from shared.results.records import InputSource
from shared.spec import coco
from shared.spec.annotations import AnnotationError, AnnotationsSpec, CategoryClasses, ImageObjects
from shared.spec.datasets import DatasetSpec
from shared.spec.model import ModelSpec
from shared.spec.voc import parse_voc
from shared.state.jobs import Job
from shared.storage.locations import Location
from worker.jobs.context import WorkerContext

VOC_READERS = 16  # VOC files read at once (one GET each)
COPY_BLOCK = 8 << 20

_SCHEMA = """
CREATE TABLE images (id INTEGER PRIMARY KEY, source TEXT, width INTEGER, height INTEGER,
                     error TEXT);
CREATE TABLE keys (key TEXT, image INTEGER);
CREATE TABLE objects (image INTEGER, class INTEGER, box TEXT, segmentation TEXT);
"""


def _id_key(value: str) -> str:
    """An id as the join compares it: a decimal id as its number (`000042` is `42`)."""
    return str(int(value)) if value.isascii() and value.isdecimal() else value


def _name_key(value: str) -> str:
    """A file name as the join compares it: `/`-separated, without a leading `./` or `/`."""
    value = value.strip().replace("\\", "/")
    while value.startswith(("./", "/")):
        value = value[1:] if value.startswith("/") else value[2:]
    return value


class AnnotationIndex:
    """Every annotated image's objects by model class, in a SQLite file, looked up per
    item by file name or id (`spec.key`)."""

    def __init__(self, spec: AnnotationsSpec, model: ModelSpec, path: Path,
                 max_pixels: int) -> None:
        self.spec, self.model, self.max_pixels = spec, model, max_pixels
        self.classes = CategoryClasses(spec, model)
        self.depths: set[int] = set()  # how many folders the annotated file names have, +1
        self.db = sqlite3.connect(path)
        self.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- building -----------------------------------------------------------------------

    def add_image(self, image_id: int | None, source: str, size: tuple[int, int] | None,
                  error: str | None, file_name: str | None, stem_id: str) -> int:
        """An annotated image under its keys (its file name, if any, and its id); its id."""
        width, height = size or (None, None)
        try:
            cursor = self.db.execute(
                "INSERT INTO images (id, source, width, height, error) VALUES (?, ?, ?, ?, ?)",
                (image_id, source, width, height, error))
        except sqlite3.IntegrityError:
            raise InputError(f"{self.spec.field}: image id {image_id} is given twice in "
                             f"{self.spec.uri}") from None
        keys = [f"id:{_id_key(stem_id)}"]
        if file_name:
            name = _name_key(file_name)
            self.depths.add(name.count("/") + 1)
            keys.append(f"name:{name}")
            if "/" in name:  # its folders may not be the item's (an absolute path, say)
                keys.append(f"base:{posixpath.basename(name)}")
        self.db.executemany("INSERT INTO keys VALUES (?, ?)",
                            [(key, cursor.lastrowid) for key in keys])
        return cursor.lastrowid

    def add_object(self, image: int, cls: int, box: tuple[int, int, int, int],
                   segmentation: Any) -> None:
        self.db.execute("INSERT INTO objects VALUES (?, ?, ?, ?)", (
            image, cls, json.dumps(box),
            None if segmentation is None else json.dumps(segmentation)))

    def fail_image(self, image: int, error: str) -> None:
        """Fail an image's item with `error` (its first error is kept)."""
        self.db.execute("UPDATE images SET error = ? WHERE id = ? AND error IS NULL",
                        (error, image))

    def finish(self) -> None:
        self.db.executescript("CREATE INDEX keys_key ON keys (key);"
                              "CREATE INDEX objects_image ON objects (image);")
        self.db.commit()

    # --- joining ------------------------------------------------------------------------

    def _candidates(self, source: InputSource) -> list[str]:
        """The keys an item may be annotated under, the most specific first."""
        path = unquote(urlparse(source.uri).path) if source.uri else source.name
        parts = [p for p in path.split("/") if p]
        stem = posixpath.splitext(parts[-1])[0] if parts else ""
        if self.spec.key == "id":
            return list(dict.fromkeys(f"id:{_id_key(v)}" for v in (source.id, stem) if v))
        out = [f"name:{'/'.join(parts[-d:])}" for d in sorted(self.depths, reverse=True)
               if d <= len(parts)]
        if parts:  # else the file name alone, against annotated names with folders
            out.append(f"base:{parts[-1]}")
        if self.spec.voc and stem:  # an XML's own stem, as VOC's layout pairs them
            out.append(f"id:{_id_key(stem)}")
        return out

    def join(self, source: InputSource) -> InputSource:
        """`source` with its image's `objects` (or the error of its annotation). A source
        that already failed, or has its own box or mask (a manifest line's), is kept."""
        if source.error is not None or source.box is not None or source.mask is not None:
            return source
        for key in self._candidates(source):
            rows = self.db.execute("SELECT image FROM keys WHERE key = ? LIMIT 2",
                                   (key,)).fetchall()
            if len(rows) > 1:
                what, value = key.split(":", 1)
                named = "id" if what == "id" else "file name"
                return replace(source, error=(
                    f"{source.name}: more than one image in {self.spec.uri} has the {named} "
                    f"{value!r}; give them distinct names, or join by the other key "
                    '(dataset.annotations.key: "id" or "file_name")'))
            if rows:
                return self._joined(source, rows[0][0])
        return replace(source, objects=ImageObjects(self.spec.uri, found=False))

    def _joined(self, source: InputSource, image: int) -> InputSource:
        where, width, height, error = self.db.execute(
            "SELECT source, width, height, error FROM images WHERE id = ?", (image,)).fetchone()
        size = (width, height) if width is not None else None
        by_class: dict[int, list[tuple[tuple[int, ...], Any]]] = {}
        for cls, box, segmentation in self.db.execute(
                "SELECT class, box, segmentation FROM objects WHERE image = ? ORDER BY rowid",
                (image,)):
            by_class.setdefault(cls, []).append(
                (tuple(json.loads(box)), None if segmentation is None else json.loads(
                    segmentation)))
        try:
            if error is not None:
                raise AnnotationError(error)
            if self.spec.objects == "masks":
                objects = ImageObjects(where, size, masks={
                    cls: self._union(found, size) for cls, found in by_class.items()})
            else:
                objects = ImageObjects(where, size, boxes={
                    cls: tuple(box for box, _ in found) for cls, found in by_class.items()})
        except AnnotationError as e:
            return replace(source, error=f"{source.name}: its annotation in {where}: {e}")
        return replace(source, objects=objects)

    def _union(self, found: list[tuple[tuple[int, ...], Any]],
               size: tuple[int, int] | None) -> str:
        """The union of a class's objects (segmentations, or boxes where there are none)
        as a compressed RLE of the image, merged by pycocotools without drawing a mask."""
        from pycocotools import mask as coco_mask

        if size is None:
            raise AnnotationError("masks need the image's width and height")
        width, height = size
        if width * height > self.max_pixels:
            raise AnnotationError(f"the image is annotated as {width}x{height}, more than "
                                  f"{self.max_pixels} pixels (SALIENCY_MAX_IMAGE_PIXELS)")
        rles = []
        for (x0, y0, x1, y1), segmentation in found:
            if segmentation is None:  # its box, within the image
                x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
                if x0 < x1 and y0 < y1:
                    rles += coco_mask.frPyObjects(np.array([[x0, y0, x1 - x0, y1 - y0]],
                                                           dtype=np.float64), height, width)
                continue
            # Checked first: pycocotools' C code trusts what it is given.
            problem = coco.segmentation_error(segmentation, width, height)
            if problem is not None:
                raise AnnotationError(problem)
            if isinstance(segmentation, list):  # polygons
                rles += coco_mask.frPyObjects(segmentation, height, width)
            elif isinstance(segmentation["counts"], list):  # an uncompressed RLE
                rles.append(coco_mask.frPyObjects(segmentation, height, width))
            else:
                rles.append({"size": [height, width],
                             "counts": segmentation["counts"].encode("ascii")})
        if not rles:  # every box lies outside the image
            rles.append(coco_mask.encode(np.zeros((height, width, 1), dtype=np.uint8,
                                                  order="F"))[0])
        return coco_mask.merge(rles, intersect=False)["counts"].decode("ascii")


def _copy(location: Location, path: Path, limit: int, field: str) -> None:
    """The object at `location` into the file `path`, in ranged blocks, refusing one larger
    than `limit` bytes (SALIENCY_MAX_ANNOTATION_BYTES)."""
    offset = 0
    with open(path, "wb") as out:
        while True:
            try:
                data = location.storage.get_range(location.key, offset, offset + COPY_BLOCK)
            except FileNotFoundError:
                raise InputError(f"{field}: no object at {location.uri!r}") from None
            offset += len(data)
            if offset > limit:
                raise InputError(f"{field}: {location.uri} is larger than {limit} bytes "
                                 "(SALIENCY_MAX_ANNOTATION_BYTES)")
            out.write(data)
            if len(data) < COPY_BLOCK:
                return


def _check_mapped(index: AnnotationIndex, names: Iterable[str],
                  mapped: Iterable[int | None]) -> None:
    """Some category must be a class of the model, or no item could have an object."""
    names = sorted(set(names))
    if names and not any(c is not None for c in mapped):
        spec = index.spec
        raise InputError(
            f"{spec.field}: none of the categories of {spec.uri} ({', '.join(names[:8])}"
            f"{', ...' if len(names) > 8 else ''}) is a class of model {index.model.name!r}; "
            "map them with dataset.annotations.category_map")


def _read_coco(ctx: WorkerContext, job: Job, index: AnnotationIndex, folder: Path) -> None:
    spec = index.spec
    location = ctx.locator.locate(spec.coco, job.tenant, spec.field, own_area=True)
    path = folder / "instances.json"
    _copy(location, path, ctx.settings.max_annotation_bytes, spec.field)
    where = f"{spec.field}: {spec.coco}"
    with open(path, "rb") as f:
        names = coco.categories(f, where)
        unknown = index.classes.unknown_keys(set(names.values()), set(names))
        if unknown:
            raise InputError(f"dataset.annotations.category_map: {unknown[:5]} name no "
                             f"category of {spec.coco} (by name or id)")
        classes = {cid: index.classes.of(name, cid) for cid, name in names.items()}
        _check_mapped(index, names.values(), classes.values())
        for image in coco.images(f, where):
            index.add_image(image.id, f"{spec.coco} image {image.id}", image.size,
                            image.error, image.file_name, str(image.id))
        for obj in coco.objects(f, where, with_segmentation=spec.objects == "masks"):
            if obj.error is not None:
                index.fail_image(obj.image_id, obj.error)
            elif obj.category_id not in classes:
                index.fail_image(obj.image_id, f"{obj.name}: category_id {obj.category_id} "
                                               "is not among the file's categories")
            elif classes[obj.category_id] is not None:
                index.add_object(obj.image_id, classes[obj.category_id], obj.box,
                                 obj.segmentation)


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(islice(items, size)):
        yield batch


def _read_voc(ctx: WorkerContext, job: Job, index: AnnotationIndex) -> None:
    spec = index.spec
    location = ctx.locator.prefix(spec.voc, job.tenant, spec.field)
    root = spec.voc.rstrip("/") + "/"
    limit, total, files = ctx.settings.max_annotation_bytes, 0, 0
    mapped: dict[str, int | None] = {}  # every category seen, and its class
    keys = (k for k in location.storage.list(location.key) if k.lower().endswith(".xml"))
    with ThreadPoolExecutor(VOC_READERS, "voc") as pool:
        for batch in _batches(keys, 4 * VOC_READERS):
            try:
                contents = list(pool.map(location.storage.get, batch))
            except FileNotFoundError as e:
                raise InputError(f"{spec.field}: {e}") from None
            for key, data in zip(batch, contents, strict=True):
                total, files = total + len(data), files + 1
                if total > limit:
                    raise InputError(f"{spec.field}: the XML files under {spec.voc} are "
                                     f"larger than {limit} bytes in all "
                                     "(SALIENCY_MAX_ANNOTATION_BYTES)")
                uri = root + key[len(location.key):]
                stem = posixpath.splitext(posixpath.basename(key))[0]
                try:
                    voc = parse_voc(data)
                except AnnotationError as e:
                    index.add_image(None, uri, None, str(e), None, stem)
                    continue
                image = index.add_image(None, uri, voc.size, None, voc.filename, stem)
                for name, box in voc.objects:
                    if name not in mapped:
                        mapped[name] = index.classes.of(name)
                    if mapped[name] is not None:
                        index.add_object(image, mapped[name], box, None)
    if not files:
        raise InputError(f"{spec.field}: no .xml file under {spec.voc}")
    _check_mapped(index, mapped, mapped.values())


@contextmanager
def annotation_index(ctx: WorkerContext, job: Job,
                     spec: DatasetSpec) -> Iterator[AnnotationIndex]:
    """The data set's annotations read into an index (see the module's docstring), removed
    when the block ends. `InputError` (the job fails) names what is wrong with them."""
    model = ctx.models.for_job(job).spec
    with tempfile.TemporaryDirectory(prefix="annotations-") as folder:
        index = AnnotationIndex(spec.annotations, model, Path(folder, "index.sqlite"),
                                ctx.settings.max_image_pixels)
        try:
            if spec.annotations.coco:
                _read_coco(ctx, job, index, Path(folder))
            else:
                _read_voc(ctx, job, index)
            index.finish()
            yield index
        finally:
            index.close()
