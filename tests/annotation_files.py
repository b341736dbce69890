"""COCO and VOC annotation files as the tests write them: a COCO instances file (checked by
loading it with pycocotools' own `COCO`) and VOC `Annotations/*.xml`. A module of its own,
imported by name by the worker and end-to-end tests."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any


def coco_json(images: list[dict], annotations: list[dict], categories: list[dict]) -> bytes:
    """An instances file in the official files' key order (categories last)."""
    numbered = [{"id": i, "iscrowd": 0, "area": 1.0, **a} for i, a in
                enumerate(annotations, start=1)]
    return json.dumps({"info": {"description": "test"}, "licenses": [], "images": images,
                       "annotations": numbered, "categories": categories}).encode()


def checked_coco(data: bytes, folder: Path) -> Any:
    """`data` loaded by pycocotools' COCO (which builds its index from it): the file is a
    valid COCO file as the reference reader sees it."""
    from pycocotools.coco import COCO

    path = folder / "checked-instances.json"
    path.write_bytes(data)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
        return COCO(str(path))


def voc_xml(filename: str | None, size: tuple[int, int] | None,
            objects: list[tuple[str, tuple[float, float, float, float]]]) -> bytes:
    """A VOC annotation: `objects` are (name, (xmin, ymin, xmax, ymax)), 1-based inclusive."""
    parts = ["<annotation>", "<folder>VOC2012</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                     "<depth>3</depth></size>")
    for name, (x0, y0, x1, y1) in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose>"
                     f"<truncated>0</truncated><difficult>0</difficult><bndbox>"
                     f"<xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax>"
                     f"<ymax>{y1:g}</ymax></bndbox></object>")
    parts.append("</annotation>")
    return "\n".join(parts).encode()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><filename>&secret;</filename></annotation>"""

BARE_DOCTYPE = b"""<?xml version="1.0"?>
<!DOCTYPE annotation>
<annotation><filename>a.png</filename></annotation>"""
