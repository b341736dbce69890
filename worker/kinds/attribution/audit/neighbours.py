"""The k nearest neighbours of every point, in time linear in the number of points.

Small sets (up to `EXACT_LIMIT` points) are searched exhaustively. Larger ones are first cut
into cells of about `CELL_SIZE` points by k-means; the points of a cell look for their
neighbours among the points of that cell and of the `PROBE - 1` cells whose centres are
nearest to its centre (the inverted-file search of Jégou et al. 2011, "Product quantization
for nearest neighbor search", applied cell by cell). Each query meets at most
`MAX_CANDIDATES` points, so the whole search costs O(n · MAX_CANDIDATES · d) and never forms
an n×n matrix; neighbours across a cell boundary are found when the adjacent cell is probed.
Queries go in blocks of at most `BLOCK_ENTRIES` distances, so memory stays bounded.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

EXACT_LIMIT = 4_000
CELL_SIZE = 1_000
PROBE = 4
MAX_CANDIDATES = 8_000
BLOCK_ENTRIES = 1 << 21  # distances computed at once (with their ranks: 25 MB)


def _nearest(points: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int,
             where: np.ndarray) -> np.ndarray:
    """len(queries)×k indices of the nearest candidates of each query, itself excluded.

    `where` is a scratch array of -1s (one per point), restored before returning.
    """
    where[candidates] = np.arange(len(candidates))
    cand = points[candidates]
    cand_sq = np.einsum("ij,ij->i", cand, cand)
    out = np.empty((len(queries), k), dtype=np.int64)
    step = _block_rows(len(candidates))
    for start in range(0, len(queries), step):
        block = queries[start:start + step]
        d = _distances(points[block], cand, cand_sq)
        self_col = where[block]
        rows = np.flatnonzero(self_col >= 0)
        d[rows, self_col[rows]] = np.inf
        out[start:start + len(block)] = candidates[_k_smallest(d, k)]
    where[candidates] = -1
    return out


def _block_rows(candidates: int) -> int:
    return max(1, BLOCK_ENTRIES // max(candidates, 1))


def _distances(q: np.ndarray, cand: np.ndarray, cand_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of each query row to each candidate row."""
    return cand_sq[None, :] - 2 * (q @ cand.T) + np.einsum("ij,ij->i", q, q)[:, None]


def _k_smallest(d: np.ndarray, k: int) -> np.ndarray:
    """Per row of `d`, the columns of its k smallest values, smallest first."""
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def nearest_among(points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """len(queries)×k indices of each query's k nearest `points` (Euclidean), nearest first.

    Exhaustive, in blocks of queries: for assigning new points to a set already searched.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(points))
    points_sq = np.einsum("ij,ij->i", points, points)
    out = np.empty((len(queries), k), dtype=np.int64)
    step = _block_rows(len(points))
    for start in range(0, len(queries), step):
        d = _distances(queries[start:start + step], points, points_sq)
        out[start:start + len(d)] = _k_smallest(d, k)
    return out


def knn_indices(points: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """n×k indices of each point's k nearest other points (Euclidean), nearest first.

    Exact up to `EXACT_LIMIT` points, approximate (cell by cell, see the module) above.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    n = len(points)
    if n < 2:
        raise ValueError("nearest neighbours need at least two points")
    k = min(k, n - 1)
    where = np.full(n, -1, dtype=np.int64)
    everyone = np.arange(n)
    if n <= EXACT_LIMIT:
        return _nearest(points, everyone, everyone, k, where)

    rng = np.random.default_rng(seed)
    cells = math.ceil(n / CELL_SIZE)
    sample = rng.choice(n, size=min(n, 20 * CELL_SIZE + 50 * cells), replace=False)
    with warnings.catch_warnings():
        # Many identical maps leave some cells empty; an empty cell simply has no queries.
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans = KMeans(cells, n_init=1, max_iter=50, random_state=seed).fit(points[sample])
    labels = kmeans.predict(points)
    centres = kmeans.cluster_centers_
    centre_dist = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    probes = np.argsort(centre_dist, axis=1, kind="stable")[:, :PROBE]
    by_cell = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[by_cell], np.arange(cells + 1))

    out = np.empty((n, k), dtype=np.int64)
    for cell in range(cells):
        queries = by_cell[bounds[cell]:bounds[cell + 1]]
        if len(queries) == 0:
            continue
        candidates = np.concatenate([by_cell[bounds[c]:bounds[c + 1]] for c in probes[cell]])
        if len(candidates) > MAX_CANDIDATES:
            candidates = rng.choice(candidates, size=MAX_CANDIDATES, replace=False)
        if len(candidates) <= k:  # a lone cell far from all others: search everyone
            candidates = everyone
        out[queries] = _nearest(points, queries, candidates, k, where)
    return out
