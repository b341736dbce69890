"""Spectral relevance analysis (SpRAy): the decision strategies of one predicted class.

Lapuschkin et al. 2019, "Unmasking Clever Hans predictors and assessing what machines really
learn" (Nature Communications 10, 1096), as the CoRelAy toolbox builds it: normalised maps,
a symmetric k-nearest-neighbour affinity graph (here with locally scaled weights), its
normalised spectrum, the eigengap for the number of clusters, and k-means on the spectral
embedding. Maps are first reduced by PCA and
the neighbours found by `worker.kinds.attribution.audit.neighbours`, so no n×n matrix is ever formed
and time grows about linearly with the class size.

A large class is clustered on a seeded sample (`sample_order`); every other map then joins
the cluster most of its nearest sampled maps belong to (`assign`), block by block, so memory
does not grow with the class beyond a few bytes per map.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from shared.seeds import derive_seed
from worker.kinds.attribution.audit.neighbours import knn_indices, nearest_among

MIN_CLASS_ITEMS = 20  # classes with fewer predicted items are not clustered
MAX_CLUSTERS = 8
PCA_DIMS = 32
NEIGHBOURS = 10
SCALE_NEIGHBOUR = 7  # the local scale of the affinity: the distance to this neighbour
GAP_FLOOR = 1e-3  # Laplacian eigenvalues below this count as "zero" for the eigengap
DENSE_SPECTRUM_LIMIT = 200  # below this many maps, a dense eigendecomposition is cheaper


@dataclass(frozen=True)
class Cluster:
    """One strategy: the ids of its maps, its share of the class and its mean map."""

    members: np.ndarray
    share: float
    mean_map: np.ndarray  # 32×32 float32, the mean of the members' unit-mean maps

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Clustering:
    """The clusters of one class (largest first), each map's cluster, and the spectrum."""

    clusters: tuple[Cluster, ...]
    labels: np.ndarray  # per input map (the sample's, then the rest's), its cluster's position
    eigenvalues: np.ndarray  # of the sample's normalised affinity, largest first
    sampled: int  # the maps clustered; the others were assigned to their nearest cluster

    @property
    def size(self) -> int:
        return len(self.labels)


def unit_mean(thumbs: np.ndarray) -> np.ndarray:
    """n×H×W maps scaled to mean 1 each (all-zero maps stay zero), flattened to n×(H·W)."""
    flat = np.asarray(thumbs, dtype=np.float32).reshape(len(thumbs), -1)
    means = flat.mean(axis=1, keepdims=True)
    return np.divide(flat, means, out=np.zeros_like(flat), where=means > 0)


def reduce(maps: np.ndarray, seed: int) -> tuple[PCA, np.ndarray]:
    """The projection on the maps' first principal components (at most `PCA_DIMS`), fitted,
    and the maps projected."""
    dims = min(PCA_DIMS, len(maps) - 1, maps.shape[1])
    # The randomized solver needs only products with the maps: no full SVD of n×1024.
    pca = PCA(dims, svd_solver="randomized", random_state=seed)
    return pca, pca.fit_transform(maps)


def _sums(maps: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """count×(H·W): the sum of the maps of each cluster (float64)."""
    return np.stack([maps[labels == c].sum(axis=0, dtype=np.float64) for c in range(count)])


def affinity(points: np.ndarray, neighbours: np.ndarray) -> sparse.csr_matrix:
    """The symmetric k-NN graph, each edge weighted with a locally scaled Gaussian.

    w_ij = exp(-d_ij² / (σ_i σ_j)), σ_i the distance from i to its `SCALE_NEIGHBOUR`-th
    neighbour (Zelnik-Manor & Perona 2004, "Self-tuning spectral clustering"): a neighbour
    that a small group had to take from another group, because it has fewer than k members,
    weighs little. The graph is averaged with its transpose, as CoRelAy does.
    """
    n, k = neighbours.shape
    distance = np.sqrt(((points[:, None, :] - points[neighbours]) ** 2).sum(-1))
    sigma = distance[:, min(SCALE_NEIGHBOUR, k) - 1]
    floor = max(float(np.median(sigma)) * 1e-6, np.finfo(np.float64).tiny)
    weights = np.exp(-distance**2 / np.maximum(sigma[:, None] * sigma[neighbours], floor))
    rows = np.repeat(np.arange(n), k)
    graph = sparse.csr_matrix((weights.ravel(), (rows, neighbours.ravel())), shape=(n, n))
    return ((graph + graph.T) / 2).tocsr()


def _component_spectrum(block: sparse.csr_matrix, count: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The `count` largest eigenpairs of one connected component's normalised affinity."""
    n = block.shape[0]
    if n <= DENSE_SPECTRUM_LIMIT or count >= n:
        values, vectors = np.linalg.eigh(block.toarray())
    else:
        v0 = np.random.default_rng(seed).uniform(-1, 1, n)
        values, vectors = eigsh(block, k=count, which="LA", v0=v0, tol=1e-6)
    order = np.argsort(values)[::-1][:count]
    return values[order], vectors[:, order]


def spectrum(graph: sparse.csr_matrix, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` largest eigenvalues (descending) and eigenvectors of D^-1/2 A D^-1/2.

    Solved per connected component and merged: the spectrum of a graph is the union of its
    components' spectra, and a Krylov solver on the whole graph would find the eigenvalue 1
    only once however many components share it.
    """
    n = graph.shape[0]
    degree = np.asarray(graph.sum(axis=1)).ravel()
    # A map whose every edge weighs (numerically) nothing stands alone, with eigenvalue 0.
    scale = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    normalised = (sparse.diags(scale) @ graph @ sparse.diags(scale)).tocsr()
    _, component = connected_components(normalised, directed=False)
    found: list[tuple[float, np.ndarray, np.ndarray]] = []
    for c in range(component.max() + 1):
        rows = np.flatnonzero(component == c)
        values, vectors = _component_spectrum(normalised[rows][:, rows], count, seed)
        found.extend((float(v), rows, vectors[:, i]) for i, v in enumerate(values))
    found.sort(key=lambda entry: -entry[0])
    found = found[:count]
    eigenvalues = np.array([value for value, _, _ in found])
    eigenvectors = np.zeros((n, len(found)))
    for i, (_, rows, vector) in enumerate(found):
        eigenvectors[rows, i] = vector
    return eigenvalues, eigenvectors


def eigengap(eigenvalues: np.ndarray, max_clusters: int) -> int:
    """The number of clusters k ≤ max_clusters after which the spectrum drops the most.

    Measured on the normalised Laplacian's eigenvalues μ = 1 - λ on a log scale, as the
    ratio (μ_k+1 + ε) / (μ_k + ε) with ε = `GAP_FLOOR`: a drop from 0.001 to 0.1 (groups
    that barely touch) outweighs one from 0.1 to 0.2 (the spread within a group), which the
    plain difference of eigenvalues does not see.
    """
    mu = np.clip(1.0 - np.asarray(eigenvalues[: max_clusters + 1], dtype=np.float64), 0, None)
    if len(mu) < 2:
        return 1
    ratios = np.log(mu[1:] + GAP_FLOOR) - np.log(mu[:-1] + GAP_FLOOR)
    return int(np.argmax(ratios)) + 1


def embed_and_split(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means on the rows of the top-k eigenvectors, each scaled to unit length (Ng et al.
    2001). Rows that are zero (maps of a component beyond the k-th) stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    embedding = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    with warnings.catch_warnings():
        # Identical maps give identical rows; k-means then finds fewer distinct clusters
        # than asked for, which is the right answer, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(k, n_init=4, random_state=seed).fit_predict(embedding)


def group_seed(job_seed: int, position: int, cls: int) -> int:
    """The seed of one method position's and predicted class's sample and clustering."""
    return derive_seed(job_seed, position, cls)


def sample_order(count: int, cap: int, seed: int) -> tuple[np.ndarray, int]:
    """The positions of `count` maps with those to cluster first, and how many they are.

    Up to `cap` maps, all of them; above, a sample of `cap` drawn with `seed`. Both parts are
    in ascending order. It depends only on its arguments, so on the job's seed and the
    class's members, never on how the job was chunked.
    """
    if count <= cap:
        return np.arange(count), count
    chosen = np.zeros(count, dtype=bool)
    chosen[np.random.default_rng(seed).choice(count, size=cap, replace=False)] = True
    return np.concatenate([np.flatnonzero(chosen), np.flatnonzero(~chosen)]), cap


def assign(points: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query's cluster: the one most of its `NEIGHBOURS` nearest `points` belong to
    (`labels` are the points' clusters), on a tie the cluster of the nearest of them."""
    near = nearest_among(points, queries, NEIGHBOURS)
    votes = np.zeros((len(queries), int(labels.max()) + 1))
    rows = np.arange(len(queries))
    np.add.at(votes, (rows[:, None], labels[near]), 1.0)
    votes[rows, labels[near[:, 0]]] += 0.5
    return votes.argmax(axis=1)


def _check(thumbs: np.ndarray, ids: np.ndarray) -> None:
    if thumbs.ndim != 3 or len(ids) != len(thumbs):
        raise ValueError(f"expected n×H×W thumbnails and n ids, got {thumbs.shape}, {len(ids)}")


def spray_clusters(
    thumbs: np.ndarray, ids: Sequence | np.ndarray, *, seed: int,
    max_clusters: int = MAX_CLUSTERS,
    rest: Iterable[tuple[Sequence | np.ndarray, np.ndarray]] = (),
) -> Clustering:
    """Cluster one class's n×32×32 relevance thumbnails into strategies; `ids` name the maps.

    `rest` yields more (ids, thumbnails) of the class in blocks, left out of the clustered
    sample: each of their maps joins its nearest cluster (`assign`) and counts in the
    cluster's members, share and mean map; only one block is held at a time.
    """
    thumbs = np.asarray(thumbs)
    ids = np.asarray(ids)
    n = len(thumbs)
    _check(thumbs, ids)
    if n < 3:
        raise ValueError(f"clustering needs at least 3 maps, got {n}")
    if not 1 <= max_clusters < n:
        raise ValueError(f"max_clusters must be between 1 and {n - 1}, got {max_clusters}")
    seed = int(seed) % 2**32  # scikit-learn takes 32-bit seeds; derived seeds have 63 bits
    maps = unit_mean(thumbs)
    # Classes are clustered in parallel across workers; within one, the products are small
    # enough that BLAS threads cost more (and vary more) than they give.
    with threadpool_limits(limits=1, user_api="blas"):
        pca, points = reduce(maps, seed)
        neighbours = knn_indices(points, NEIGHBOURS, seed=seed)
        eigenvalues, vectors = spectrum(affinity(points, neighbours), max_clusters + 1, seed)
        k = eigengap(eigenvalues, max_clusters)
        if k == 1:
            labels = np.zeros(n, dtype=np.int64)
        else:
            labels = embed_and_split(vectors[:, :k], k, seed)
        count = int(labels.max()) + 1
        sums = _sums(maps, labels, count)
        del maps
        all_ids, all_labels = [ids], [labels]
        for block_ids, block in rest:
            block_ids, block = np.asarray(block_ids), np.asarray(block)
            _check(block, block_ids)
            if not len(block):
                continue
            block_maps = unit_mean(block)
            block_labels = assign(points, labels, pca.transform(block_maps))
            sums += _sums(block_maps, block_labels, count)
            all_ids.append(block_ids)
            all_labels.append(block_labels)
    ids, labels = np.concatenate(all_ids), np.concatenate(all_labels)
    # Largest cluster first; equal sizes in order of their first map.
    sizes = np.bincount(labels, minlength=count)
    found = np.flatnonzero(sizes)
    firsts = np.array([np.argmax(labels == c) for c in found])
    order = found[np.lexsort((firsts, -sizes[found]))]
    relabel = np.empty(count, dtype=np.int64)
    relabel[order] = np.arange(len(order))
    labels = relabel[labels]
    side = thumbs.shape[1:]
    clusters = tuple(
        Cluster(
            members=np.sort(ids[labels == new]),
            share=float(sizes[old] / len(labels)),
            mean_map=(sums[old] / sizes[old]).reshape(side).astype(np.float32),
        )
        for new, old in enumerate(order)
    )
    return Clustering(clusters, labels, eigenvalues, n)
