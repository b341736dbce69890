"""Does a method's map depend on the input at all? Measured on the job's maps, or structural.

A DeconvNet map passes back through a rectifier whatever the forward input was, so its only
link to the image is the max-pooling switches; a model without max-pooling (EfficientNet-Lite0)
gives every image of a class the same map. `probe_structure` finds that exactly, from the
model alone; `input_dependence` measures how alike the maps of a job's different images are.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shared.spec.targets import ClassTarget
from worker.engine.core import Engine

MIN_SAME_CLASS_PAIRS = 10
ALIKE_AT = 0.9  # a median cosine at least this high earns the measured warning
PROBE_IMAGES = 3
PROBE_TOLERANCE = 1e-4  # norm-relative: float rounding, not a real difference


@dataclass(frozen=True)
class InputDependence:
    """The median cosine between maps of different images, over which pairs, and a warning."""

    median_cosine: float | None
    pairs: int
    scope: str  # "same_class" or "any"
    warning: str | None

    def to_json(self) -> dict[str, Any]:
        return {"median_cosine": self.median_cosine, "pairs": self.pairs, "scope": self.scope,
                "warning": self.warning}


def input_dependence(
    maps: Sequence[np.ndarray], classes: Sequence[int], method: str
) -> InputDependence:
    """The median cosine between the signed maps of different images.

    Pairs of images with the same target class when there are at least
    `MIN_SAME_CLASS_PAIRS` of them, else all pairs. All-zero maps are left out.
    """
    if len(maps) != len(classes):
        raise ValueError(f"{len(maps)} maps and {len(classes)} classes; give one class per map")
    flat = np.stack([np.ravel(m).astype(np.float64) for m in maps]) if maps else np.zeros((0, 1))
    norms = np.linalg.norm(flat, axis=1)
    keep = norms > 0
    units = flat[keep] / norms[keep, None]
    labels = np.asarray(classes)[keep]
    upper = np.triu_indices(len(units), k=1)
    cosines = (units @ units.T)[upper]
    same = labels[upper[0]] == labels[upper[1]]
    scope = "same_class" if same.sum() >= MIN_SAME_CLASS_PAIRS else "any"
    chosen = cosines[same] if scope == "same_class" else cosines
    if chosen.size == 0:
        return InputDependence(None, 0, scope, None)
    median = float(statistics.median(chosen.tolist()))
    warning = None
    if median >= ALIKE_AT:
        where = "of the same class" if scope == "same_class" else "(any classes)"
        warning = (
            f"{method}: maps of different images {where} have a median cosine of "
            f"{median:.3f} (measured): for this model they barely depend on the input"
        )
    return InputDependence(median, int(chosen.size), scope, warning)


def probe_structure(engine: Engine, method: str, input_size: int, *, seed: int = 0,
                    channels: int = 3) -> str | None:
    """A warning when `method`'s map cannot depend on the input for this model, else None.

    Maps of one class for `PROBE_IMAGES` unrelated random inputs agree to float rounding
    only when the backward pass never reads the input (no input-dependent operation, such as
    max-pool switches, on its path): then every image of a class gets the same map.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(PROBE_IMAGES, channels, input_size, input_size, generator=generator)
    result = engine.attribute(x, methods=(method,), targets=ClassTarget(0))
    maps = [image.maps[0].values.astype(np.float64) for image in result.images]
    reference = maps[0]
    scale = np.linalg.norm(reference)
    if scale == 0:
        return None
    if all(np.linalg.norm(m - reference) <= PROBE_TOLERANCE * scale for m in maps[1:]):
        return (
            f"{method}: for this model the map cannot depend on the input (structural: its "
            "backward pass reads nothing of the image, e.g. no max-pooling switches), so "
            "every image of a class gets the same map"
        )
    return None
