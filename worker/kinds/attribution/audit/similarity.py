"""How alike two maps are: rank correlation, structural similarity and cosine."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from skimage.metrics import structural_similarity


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation of two equally shaped maps (ties get their mean rank).

    None when either map is constant, where no rank order exists.
    """
    ra = rankdata(np.ravel(a))
    rb = rankdata(np.ravel(b))
    ra -= ra.mean()
    rb -= rb.mean()
    norm = np.sqrt((ra @ ra) * (rb @ rb))
    if norm == 0:
        return None
    return float(ra @ rb / norm)


def unit_max(map2d: np.ndarray) -> np.ndarray:
    """A non-negative map divided by its maximum (an all-zero map stays zero)."""
    map2d = np.asarray(map2d, dtype=np.float64)
    top = map2d.max()
    return map2d / top if top > 0 else np.zeros_like(map2d)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two non-negative H×W maps, each scaled to a maximum of 1."""
    return float(structural_similarity(unit_max(a), unit_max(b), data_range=1.0))


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """The cosine of two maps as flat vectors; None when either is zero."""
    a = np.ravel(a).astype(np.float64)
    b = np.ravel(b).astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else None
