"""A COCO instances file read in streamed passes, never whole.

The official files put `categories` after `annotations` (train2017's is 450 MB), so a
single pass could not tell which objects matter until it had kept them all. Each pass here
(`categories`, `images`, `annotations`) streams the file once with ijson's C parser and
builds only the entries of its own array, one at a time: memory is one entry, whatever the
file's size. A file that is not a COCO file raises `InputError` (the job fails, naming it);
an entry that is malformed in a way that concerns one image only comes out with its
`error`, and fails that image's item alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import ijson
import numpy as np

from shared.errors import InputError
from shared.spec.annotations import MAX_NAME_CHARS, AnnotationError, coco_box

MAX_FILE_NAME_CHARS = 1024
MAX_PERIMETER_SIDES = 64  # an object's polygons: at most 64 × (width + height) px of outline


@dataclass(frozen=True)
class CocoImage:
    """One entry of `images`: its id, file name, annotated (width, height) if given."""

    id: int
    file_name: str
    size: tuple[int, int] | None
    error: str | None = None


@dataclass(frozen=True)
class CocoObject:
    """One entry of `annotations` (`name` says which, for messages): its image, category, box
    and raw segmentation (None when it has none), or the error that fails its image's item."""

    name: str
    image_id: int
    category_id: int | None = None
    box: tuple[int, int, int, int] | None = None
    segmentation: Any = None
    error: str | None = None


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id(value: Any) -> bool:
    """An image id: a non-negative integer that fits the index's 64 bits."""
    return _integer(value) and 0 <= value < 1 << 63


def _entries(f: BinaryIO, where: str, array: str) -> Iterator[tuple[int, Any]]:
    """The entries of the top-level `array`, numbered, streamed from the file's start."""
    f.seek(0)
    try:
        yield from enumerate(ijson.items(f, f"{array}.item", use_float=True))
    except ijson.JSONError as e:  # yajl's message draws the spot over lines: keep one
        raise InputError(f"{where}: is not valid JSON ({' '.join(str(e).split())})") from None


def categories(f: BinaryIO, where: str) -> dict[int, str]:
    """Category id -> name; `InputError` if the file has none or one is malformed."""
    out: dict[int, str] = {}
    for i, raw in _entries(f, where, "categories"):
        if not (isinstance(raw, dict) and _integer(raw.get("id"))
                and isinstance(raw.get("name"), str)
                and 0 < len(raw["name"]) <= MAX_NAME_CHARS):
            raise InputError(f"{where}: categories[{i}] needs an integer id and a name")
        out[raw["id"]] = raw["name"]
    if not out:
        raise InputError(f"{where}: has no categories; is it a COCO instances file?")
    return out


def _size(raw: dict[str, Any]) -> tuple[tuple[int, int] | None, str | None]:
    width, height = raw.get("width"), raw.get("height")
    if width is None and height is None:
        return None, None
    if _integer(width) and _integer(height) and width > 0 and height > 0:
        return (width, height), None
    return None, f"width and height must be positive integers, got {width!r} and {height!r}"


def images(f: BinaryIO, where: str) -> Iterator[CocoImage]:
    """The file's images; `InputError` for an entry without an integer id or a file name
    (it could be no item's) and for a file with no images at all."""
    seen = False
    for i, raw in _entries(f, where, "images"):
        if not (isinstance(raw, dict) and _id(raw.get("id"))
                and isinstance(raw.get("file_name"), str)
                and 0 < len(raw["file_name"]) <= MAX_FILE_NAME_CHARS):
            raise InputError(f"{where}: images[{i}] needs an integer id (0 to 2^63 - 1) and a "
                             "file_name")
        size, error = _size(raw)
        seen = True
        yield CocoImage(raw["id"], raw["file_name"], size, error)
    if not seen:
        raise InputError(f"{where}: has no images; is it a COCO instances file?")


def objects(f: BinaryIO, where: str, with_segmentation: bool) -> Iterator[CocoObject]:
    """The file's annotations, each checked; `InputError` for one without an integer
    `image_id` (no image's item could carry its error)."""
    for i, raw in _entries(f, where, "annotations"):
        if not isinstance(raw, dict) or not _id(raw.get("image_id")):
            raise InputError(f"{where}: annotations[{i}] needs an integer image_id (0 to "
                             "2^63 - 1)")
        name = f"annotation {raw['id']}" if _integer(raw.get("id")) else f"annotations[{i}]"
        image_id, category_id = raw["image_id"], raw.get("category_id")
        if not _integer(category_id):
            yield CocoObject(name, image_id, error=f"{name}: category_id must be an integer")
            continue
        try:
            box = coco_box(raw.get("bbox"))
        except AnnotationError as e:
            yield CocoObject(name, image_id, category_id, error=f"{name}: {e}")
            continue
        segmentation = raw.get("segmentation") if with_segmentation else None
        yield CocoObject(name, image_id, category_id, box, segmentation or None)


def rle_string_counts(counts: str) -> list[int]:
    """The run lengths of a compressed COCO RLE (pycocotools' `rleFrString`, in Python, so
    that a string that would make the C code read or write out of bounds is refused before
    it gets there); `AnnotationError` if it is malformed."""
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise AnnotationError("the RLE counts string ends inside a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise AnnotationError(f"the RLE counts string has a character out of range "
                                      f"({counts[p]!r})")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if not 0 <= x < 1 << 32:
            raise AnnotationError("the RLE counts string has a run out of range")
        out.append(x)
    return out


def rle_mask(counts: str | list[int], width: int, height: int) -> np.ndarray:
    """A COCO RLE of a width×height image (compressed, or its run lengths) as a bool H×W
    mask: pycocotools' `decode`, done here because it trips numpy 2's copy deprecation.
    `AnnotationError` if the runs do not cover the image exactly."""
    runs = rle_string_counts(counts) if isinstance(counts, str) else counts
    if sum(runs) != width * height:
        raise AnnotationError(f"its RLE covers {sum(runs)} pixels, not the image's "
                              f"{width * height}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True  # runs alternate, from a run of 0s
    column_major = np.repeat(values, runs).reshape(width, height)
    return np.ascontiguousarray(column_major.T)


def _polygon_error(polygons: list, width: int, height: int) -> str | None:
    perimeter = 0.0
    for polygon in polygons:
        if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon)):
            return "a polygon must be a list of at least 3 points [x1, y1, x2, y2, ...]"
        xs, ys = polygon[0::2], polygon[1::2]
        if not (all(-1 <= x <= width + 1 for x in xs) and all(-1 <= y <= height + 1 for y in ys)):
            return f"a polygon has points outside the {width}x{height} image"
        perimeter += sum(max(abs(xs[i] - xs[i - 1]), abs(ys[i] - ys[i - 1]))
                         for i in range(len(xs)))
    if perimeter > MAX_PERIMETER_SIDES * (width + height):
        return (f"its polygons are {perimeter:.0f} px long, more than {MAX_PERIMETER_SIDES} "
                f"times the image's width plus height")
    return None


def _rle_error(rle: dict, width: int, height: int) -> str | None:
    size, counts = rle.get("size"), rle.get("counts")
    if size != [height, width]:
        return f"its RLE's size {size!r} is not the image's [height, width] [{height}, {width}]"
    if isinstance(counts, str):
        try:
            runs = rle_string_counts(counts)
        except AnnotationError as e:
            return str(e)
    elif isinstance(counts, list) and all(_integer(c) and c >= 0 for c in counts):
        runs = counts
    else:
        return "its RLE counts must be a string or a list of non-negative integers"
    if sum(runs) != width * height:
        return f"its RLE covers {sum(runs)} pixels, not the image's {width * height}"
    return None


def segmentation_error(segmentation: Any, width: int, height: int) -> str | None:
    """Why pycocotools must not be given this segmentation of a width×height image (None:
    it may). Polygons must lie in the image, with a bounded outline (the rasteriser's
    memory grows with it); an RLE must cover the image exactly."""
    if isinstance(segmentation, list):
        return _polygon_error(segmentation, width, height)
    if isinstance(segmentation, dict):
        return _rle_error(segmentation, width, height)
    return "segmentation must be a list of polygons or an RLE object"
