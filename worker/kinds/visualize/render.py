"""A visualization's files: the picture (PNG, in pixel space) and the optimized input (.npy,
in the model's normalized space)."""

from __future__ import annotations

import io

import numpy as np

from shared.media.render import encode_png
from shared.spec.model import Preprocessing
from worker.models.build import display_image


def image_png(x: np.ndarray, prep: Preprocessing) -> bytes:
    """A normalized C×H×W image, un-normalized and clipped to [0, 1], as an RGB PNG."""
    return encode_png(display_image(x, prep))


def image_npy(x: np.ndarray) -> bytes:
    """A normalized C×H×W image as a float32 `.npy` file (the model's input, as optimized)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(x, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
