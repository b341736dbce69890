"""The planted-confounder data set: shapes on textured backgrounds, and a corner watermark.

Three classes of object, each with its own shape and hue (a red disc, an orange square, a
blue triangle), of random size and place on a smooth greyish background. In the training
set a small checkered mark in the top-left corner comes with most images of class 0 and
never with the others, so a model can take the mark for the class: a "Clever Hans" shortcut
(Lapuschkin et al. 2019). The test set carries the mark on some images of every class.
Everything follows from the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64  # the published demo's side; tests use smaller pictures of the same layout
CLASSES = ("disc", "square", "triangle")
MARKED_CLASS = 0
# Geometry at 64 px, scaled with the side: the mark [x0, y0, x1, y1] (end exclusive) sits
# inside the outer band; objects keep `MARGIN` clear of the edges, and so of the mark.
MARK_64 = (1, 1, 7, 7)
OBJECT_SIDES_64 = (18, 28)
MARGIN_64 = 10
TRAIN_MARKED_SHARE = 0.9
TRAIN_PER_CLASS = 100
TEST_PER_CLASS = 50
TEST_MARKED = (20, 4, 4)  # marked test images per class


@dataclass(frozen=True)
class Geometry:
    """Where things go in a size×size picture."""

    size: int
    mark: tuple[int, int, int, int]
    object_sides: tuple[int, int]
    margin: int

    @classmethod
    def of(cls, size: int) -> Geometry:
        def scaled(v: int) -> int:
            return max(1, round(v * size / 64))

        return cls(size, tuple(scaled(v) for v in MARK_64),  # type: ignore[arg-type]
                   (scaled(OBJECT_SIDES_64[0]), scaled(OBJECT_SIDES_64[1])), scaled(MARGIN_64))


@dataclass(frozen=True)
class Sample:
    """One picture (uint8 H×W×3), its class, the object's box and whether it carries the mark."""

    image: np.ndarray
    label: int
    box: tuple[int, int, int, int]
    marked: bool


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth gradient between two greyish colours, with mild noise."""
    a, b = rng.uniform(0.2, 0.6, (2, 1)) + rng.uniform(-0.06, 0.06, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:size, :size] / (size - 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / (np.ptp(t) or 1.0)
    field = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    return field + rng.normal(0, 0.03, field.shape)


def _shape(label: int, side: int) -> np.ndarray:
    """A side×side bool mask of the class's shape."""
    yy, xx = np.mgrid[:side, :side] + 0.5
    if CLASSES[label] == "disc":
        return (yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= (side / 2) ** 2
    if CLASSES[label] == "square":
        return np.ones((side, side), dtype=bool)
    return np.abs(xx - side / 2) <= yy / 2  # triangle, apex up


HUES = (0.0, 0.1, 0.62)  # the classes' hues: discs and squares differ only a little


def _colour(rng: np.random.Generator, label: int) -> np.ndarray:
    """A saturated RGB colour near the class's hue."""
    hue = (HUES[label] + rng.uniform(-0.04, 0.04)) % 1.0
    value = rng.uniform(0.7, 1.0)
    saturation = rng.uniform(0.6, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return value - value * saturation * np.clip(np.minimum(k, 4 - k), 0, 1)


def _mark(geometry: Geometry) -> np.ndarray:
    """The watermark: a black-and-white checkerboard (2-pixel squares at 64 px)."""
    x0, y0, x1, y1 = geometry.mark
    cell = max(1, round(2 * geometry.size / 64))
    yy, xx = np.mgrid[: y1 - y0, : x1 - x0]
    return (((yy // cell) + (xx // cell)) % 2).astype(np.float64)


def add_mark(image: np.ndarray) -> np.ndarray:
    """A copy of a uint8 H×W×3 picture with the watermark drawn in its corner."""
    geometry = Geometry.of(image.shape[0])
    x0, y0, x1, y1 = geometry.mark
    out = image.copy()
    out[y0:y1, x0:x1] = (_mark(geometry)[..., None] * 255).astype(np.uint8)
    return out


def sample(rng: np.random.Generator, label: int, marked: bool, size: int = SIZE) -> Sample:
    """One picture of class `label`, with or without the mark."""
    geometry = Geometry.of(size)
    picture = _background(rng, size)
    low, high = geometry.object_sides
    side = int(rng.integers(low, high + 1))
    x0 = int(rng.integers(geometry.margin, size - geometry.margin - side + 1))
    y0 = int(rng.integers(geometry.margin, size - geometry.margin - side + 1))
    colour = _colour(rng, label)
    region = picture[y0:y0 + side, x0:x0 + side]
    region[_shape(label, side)] = colour
    if marked:
        mx0, my0, mx1, my1 = geometry.mark
        picture[my0:my1, mx0:mx1] = _mark(geometry)[..., None]
    image = (np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Sample(image, label, (x0, y0, x0 + side, y0 + side), marked)


def training_set(seed: int, size: int = SIZE, per_class: int = TRAIN_PER_CLASS
                 ) -> list[Sample]:
    """`per_class` pictures per class, shuffled; most of class `MARKED_CLASS` carry the mark."""
    rng = np.random.default_rng([seed, 0])
    out = []
    for label in range(len(CLASSES)):
        share = TRAIN_MARKED_SHARE if label == MARKED_CLASS else 0.0
        marked = rng.permutation(per_class) < round(share * per_class)
        out.extend(sample(rng, label, bool(m), size) for m in marked)
    return [out[i] for i in rng.permutation(len(out))]


def test_set(seed: int, size: int = SIZE) -> list[Sample]:
    """`TEST_PER_CLASS` pictures per class, `TEST_MARKED[c]` of class c with the mark."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for label in range(len(CLASSES)):
        marked = rng.permutation(TEST_PER_CLASS) < TEST_MARKED[label]
        out.extend(sample(rng, label, bool(m), size) for m in marked)
    return out


def item_id(split: str, i: int, s: Sample) -> str:
    """The id a sample gets in the manifest; it says whether the picture carries the mark."""
    return f"{split}-{i:04d}-{'marked' if s.marked else 'clean'}"


def write_split(directory: Path, split: str, samples: list[Sample]) -> Path:
    """PNGs under `directory/split/` and `directory/split.jsonl` (uri, id, label, box)."""
    folder = directory / split
    folder.mkdir(parents=True, exist_ok=True)
    manifest = directory / f"{split}.jsonl"
    with manifest.open("w", encoding="utf-8") as f:
        for i, s in enumerate(samples):
            name = f"{i:04d}.png"
            Image.fromarray(s.image).save(folder / name)
            line = {"uri": f"{split}/{name}", "id": item_id(split, i, s), "label": s.label,
                    "box": list(s.box)}
            f.write(json.dumps(line) + "\n")
    return manifest


def read_split(manifest: Path) -> list[dict]:
    """The manifest's lines, each with its picture decoded (`image`, a PIL image)."""
    items = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            with Image.open(manifest.parent / entry["uri"]) as image:
                entry["image"] = image.convert("RGB")
            items.append(entry)
    return items
