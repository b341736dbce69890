"""Object boxes and masks carried into the model's input space, as the image is.

`worker.models.build.preprocess_image` resizes the shorter side to `preprocessing.resize` and then
crops the centre `input_size` square; a box or mask given in the original image's pixels goes
through the same two steps, so that it covers the same input pixels as the object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.errors import InputError
from shared.spec.annotations import ImageObjects
from shared.spec.coco import rle_mask
from shared.spec.model import Preprocessing

# A mask resized with antialiasing has soft edges: an input pixel belongs to the object when
# at least half of it does.
MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Region:
    """An object's pixels in the model's input (bool H×W), or the reason it has none there."""

    mask: np.ndarray | None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.mask is None) == (self.reason is None):
            raise ValueError("a Region has either a mask or the reason it has none")


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `resize` (torchvision's rule)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize * long / short)
    return (resize, new_long) if width <= height else (new_long, resize)


def crop_offset(width: int, height: int, input_size: int) -> tuple[int, int]:
    """(left, top) of the centre crop of a width×height picture (torchvision's rule)."""
    return int(round((width - input_size) / 2.0)), int(round((height - input_size) / 2.0))


def _parse_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    if (
        not isinstance(box, (list, tuple, np.ndarray))
        or len(box) != 4
        or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                   for v in box)
        or not all(math.isfinite(float(v)) for v in box)
    ):
        raise InputError(f"box: must be four numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"box: needs x0 < x1 and y0 < y1 (end exclusive), got {list(box)}")
    return x0, y0, x1, y1


def _pixel_span(start: float, end: float, size: int) -> tuple[int, int] | None:
    """The pixels [first, last) whose centres lie in [start, end), within 0..size.

    A span thinner than a pixel keeps the one pixel under its middle, so that a small object
    is not lost to rounding.
    """
    first = max(0, math.ceil(start - 0.5))
    last = min(size, math.ceil(end - 0.5))
    if first < last:
        return first, last
    middle = math.floor((start + end) / 2)
    if end <= 0 or start >= size or not 0 <= middle < size:
        return None
    return middle, middle + 1


def box_to_input(
    box: Sequence[float], image_size: tuple[int, int], preprocessing: Preprocessing
) -> Region:
    """The input pixels of a box `[x0, y0, x1, y1]` (end exclusive) of a (width, height) image.

    Raises InputError for a malformed box; a box outside the image or cropped away entirely
    gives a Region without a mask and the reason.
    """
    x0, y0, x1, y1 = _parse_box(box)
    width, height = image_size
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if not (x0 < x1 and y0 < y1):
        return Region(None, f"the box {list(box)} lies outside the {width}×{height} image")
    new_w, new_h = resized_size(width, height, preprocessing.resize)
    side = preprocessing.input_size
    left, top = crop_offset(new_w, new_h, side)
    sx, sy = new_w / width, new_h / height
    cols = _pixel_span(x0 * sx - left, x1 * sx - left, side)
    rows = _pixel_span(y0 * sy - top, y1 * sy - top, side)
    if cols is None or rows is None:
        return Region(None, f"the box {list(box)} lies outside the centre crop the model sees")
    mask = np.zeros((side, side), dtype=bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return Region(mask)


def mask_to_input(mask: np.ndarray, preprocessing: Preprocessing) -> Region:
    """The input pixels of an object mask (H×W in the image's pixels, non-zero = object).

    Resized with the image's own antialiased resize and centre crop; an input pixel is in the
    object when at least half of it is. An object thinner than half a pixel after resizing
    keeps its strongest pixels; one cropped away entirely gives a Region without a mask.
    """
    import torch
    from torchvision.transforms.v2 import functional as TF

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise InputError(f"mask: must be a non-empty H×W array, got shape {list(mask.shape)}")
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return Region(None, "the mask marks no pixel")
    new_w, new_h = resized_size(width, height, preprocessing.resize)
    side = preprocessing.input_size
    left, top = crop_offset(new_w, new_h, side)
    x = (cols + 0.5) * (new_w / width) - left
    y = (rows + 0.5) * (new_h / height) - top
    if not np.any((x >= 0) & (x < side) & (y >= 0) & (y < side)):
        return Region(None, "the mask lies outside the centre crop the model sees")
    tensor = torch.from_numpy((mask != 0).astype(np.float32))[None]
    tensor = TF.resize(tensor, [preprocessing.resize], antialias=True)
    cover = TF.center_crop(tensor, [side, side])[0].numpy()
    strongest = float(cover.max())
    return Region(cover >= (MASK_THRESHOLD if strongest >= MASK_THRESHOLD else strongest / 2))


def objects_to_input(objects: ImageObjects, cls: int, what: str,
                     image_size: tuple[int, int] | None, preprocessing: Preprocessing) -> Region:
    """The input pixels of an annotated image's objects of class `cls`: the union of their
    boxes (each as `box_to_input` places it), or of their masks (`mask_to_input`). `what`
    names the class in the reason when there are none."""
    if not objects.found:
        return Region(None, f"no annotation of this image in {objects.source}")
    if image_size is None:
        return Region(None, "a .npy input is in the model's input space: the objects of its "
                            "annotation cannot be placed on it")
    if not objects.has_class(cls):
        return Region(None, f"its annotation ({objects.source}) has no object of {what}")
    if cls in objects.masks:
        return mask_to_input(rle_mask(objects.masks[cls], *image_size), preprocessing)
    placed = [box_to_input(box, image_size, preprocessing) for box in objects.boxes[cls]]
    masks = [r.mask for r in placed if r.mask is not None]
    if not masks:
        return Region(None, "; ".join(dict.fromkeys(r.reason for r in placed)))
    return Region(np.logical_or.reduce(masks))
