"""One Pascal VOC annotation (`Annotations/<id>.xml`): its image's file name and size, and
its objects' class names and boxes.

A user's XML is parsed by defusedxml with any DOCTYPE refused: no entity is ever expanded
(the "billion laughs") and nothing external is fetched. Anything wrong with a file is an
`AnnotationError`, which fails the item of its image alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from shared.spec.annotations import MAX_NAME_CHARS, AnnotationError, Box, voc_box


@dataclass(frozen=True)
class VocImage:
    """What one XML says: `<filename>`, `<size>` (width, height), and (name, box) per
    `<object>`."""

    filename: str | None
    size: tuple[int, int] | None
    objects: tuple[tuple[str, Box], ...]


def _number(element: Element | None, what: str) -> float:
    text = (element.text or "").strip() if element is not None else ""
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{what} must be a finite number, got {text!r}")
    return value


def _size(root: Element) -> tuple[int, int] | None:
    """(width, height), or None when `<size>` is absent or zero (some tools write 0)."""
    size = root.find("size")
    if size is None:
        return None
    width, height = _number(size.find("width"), "size/width"), _number(
        size.find("height"), "size/height")
    if width == 0 and height == 0:
        return None
    if width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
        raise AnnotationError(f"size must be positive whole numbers, got {width:g}x{height:g}")
    return int(width), int(height)


def _object(element: Element, number: int) -> tuple[str, Box]:
    name = (element.findtext("name") or "").strip()
    if not 0 < len(name) <= MAX_NAME_CHARS:
        raise AnnotationError(f"object {number} has no name")
    box = element.find("bndbox")
    if box is None:
        raise AnnotationError(f"object {number} ({name}) has no bndbox")
    corners = (_number(box.find(tag), f"object {number} ({name}) bndbox/{tag}")
               for tag in ("xmin", "ymin", "xmax", "ymax"))
    try:
        return name, voc_box(*corners)
    except AnnotationError as e:
        raise AnnotationError(f"object {number} ({name}): {e}") from None


def parse_voc(data: bytes) -> VocImage:
    """The annotation in `data`; `AnnotationError` if it is not a VOC annotation, or has a
    DOCTYPE (refused: entities are never expanded)."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise AnnotationError(f"refused: a DOCTYPE or entity declaration ({e}); VOC "
                              "annotations need neither") from None
    except ParseError as e:
        raise AnnotationError(f"is not well-formed XML ({e})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"is not a VOC annotation (its root is <{root.tag[:40]}>, not "
                              "<annotation>)")
    filename = (root.findtext("filename") or "").strip() or None
    objects = tuple(_object(e, i) for i, e in enumerate(root.findall("object"), start=1))
    return VocImage(filename, _size(root), objects)
