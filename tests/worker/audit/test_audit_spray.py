"""SpRAy finds planted strategies; its parts agree with brute-force and dense references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import adjusted_rand_score

from worker.kinds.attribution.audit import neighbours, spray
from worker.kinds.attribution.audit.spray import (
    affinity,
    eigengap,
    sample_order,
    spectrum,
    spray_clusters,
    unit_mean,
)


def planted(sizes: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Relevance thumbnails of len(sizes) strategies: a blob at a strategy's place, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    places = [(16, 16), (4, 4), (26, 8), (8, 26), (28, 28)]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    maps = []
    for label in labels:
        cy, cx = np.array(places[label]) + rng.normal(0, 1.0, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        maps.append(blob * rng.uniform(0.5, 2.0) + rng.gamma(1.0, 0.03, (32, 32)))
    order = rng.permutation(len(labels))
    return np.stack(maps)[order].astype(np.float32), labels[order]


@pytest.mark.parametrize("sizes", [(60, 25, 15), (40, 40), (120, 30, 20, 10)])
def test_planted_strategies_are_found(sizes):
    thumbs, truth = planted(sizes)
    ids = np.arange(1000, 1000 + len(truth))
    result = spray_clusters(thumbs, ids, seed=3)
    assert len(result.clusters) == len(sizes)
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)
    assert [c.size for c in result.clusters] == sorted(sizes, reverse=True)
    assert sum(c.share for c in result.clusters) == pytest.approx(1.0)
    for c, cluster in enumerate(result.clusters):
        np.testing.assert_array_equal(cluster.members, ids[result.labels == c])
        expected = unit_mean(thumbs[result.labels == c]).mean(axis=0).reshape(32, 32)
        np.testing.assert_allclose(cluster.mean_map, expected, rtol=1e-5)
        assert cluster.mean_map.dtype == np.float32


def test_the_same_seed_gives_the_same_clusters():
    thumbs, _ = planted((50, 30, 20), seed=4)
    a = spray_clusters(thumbs, np.arange(100), seed=9)
    b = spray_clusters(thumbs, np.arange(100), seed=9)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)


def test_at_most_max_clusters():
    thumbs, _ = planted((20, 20, 20, 20, 20), seed=5)
    result = spray_clusters(thumbs, np.arange(100), seed=0, max_clusters=3)
    assert 1 <= len(result.clusters) <= 3
    assert len(result.eigenvalues) == 4


def test_unit_mean_scales_each_map_and_keeps_zero_maps_zero():
    thumbs = np.stack([np.full((4, 4), 3.0), np.zeros((4, 4)), np.eye(4)]).astype(np.float32)
    out = unit_mean(thumbs)
    np.testing.assert_allclose(out.mean(axis=1), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(out[2].reshape(4, 4), np.eye(4) * 4)


def test_eigengap_picks_the_largest_drop_on_a_log_scale():
    # Laplacian eigenvalues μ = 1 - λ: 0, 0.01, 0.02, 0.5 → the jump from 0.02 to 0.5 wins.
    assert eigengap(np.array([1.0, 0.99, 0.98, 0.5, 0.45]), 4) == 3
    # One connected group: the first drop (from μ = 0 to 0.7) is the largest.
    assert eigengap(np.array([1.0, 0.3, 0.2, 0.1]), 3) == 1
    # Three components and the spread within them: 0, 0, 0, 0.015, 0.037 → three, where the
    # plain difference would pick the larger step from 0.015 to 0.037.
    assert eigengap(np.array([1.0, 1.0, 1.0, 0.985, 0.963]), 4) == 3


def test_spectrum_counts_every_connected_component():
    # Three separate 6-cliques: the eigenvalue 1 three times (a Krylov solver on the whole
    # graph would report it once), then -1/5 for the rest.
    block = np.ones((6, 6)) - np.eye(6)
    graph = sparse.csr_matrix(sparse.block_diag([block] * 3))
    values, vectors = spectrum(graph, 4, seed=0)
    np.testing.assert_allclose(values, [1, 1, 1, -0.2], atol=1e-9)
    # The top three vectors span the components' indicators.
    indicators = np.kron(np.eye(3), np.ones((6, 1))) / np.sqrt(6)
    projection = vectors[:, :3] @ vectors[:, :3].T
    np.testing.assert_allclose(projection @ indicators, indicators, atol=1e-9)


def test_the_sparse_spectrum_matches_a_dense_eigendecomposition(monkeypatch):
    thumbs, _ = planted((150, 100), seed=6)
    _, points = spray.reduce(unit_mean(thumbs), 0)
    graph = affinity(points, neighbours.knn_indices(points, 10, seed=0))
    monkeypatch.setattr(spray, "DENSE_SPECTRUM_LIMIT", 50)
    values, _ = spectrum(graph, 5, seed=0)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    dense = graph.toarray() / np.sqrt(np.outer(degree, degree))
    expected = np.sort(np.linalg.eigvalsh(dense))[::-1][:5]
    np.testing.assert_allclose(values, expected, atol=1e-6)


def test_affinity_weights_by_hand(monkeypatch):
    monkeypatch.setattr(spray, "SCALE_NEIGHBOUR", 2)
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    neighbours_of = np.array([[1, 2], [0, 2], [1, 0], [2, 1]])
    sigma = np.array([3.0, 2.0, 3.0, 6.0])  # distance to each point's second neighbour
    graph = affinity(points, neighbours_of)
    assert sparse.issparse(graph) and graph.nnz <= 2 * neighbours_of.size
    dense = graph.toarray()
    np.testing.assert_allclose(dense, dense.T)

    def w(i, j):
        return np.exp(-((points[i, 0] - points[j, 0]) ** 2) / (sigma[i] * sigma[j]))

    assert dense[0, 1] == pytest.approx(w(0, 1))  # a neighbour both ways
    assert dense[3, 2] == pytest.approx(w(3, 2) / 2)  # one way: halved by the symmetrisation
    assert dense[0, 3] == 0.0  # not neighbours


def test_duplicate_points_get_full_weight_not_nan():
    points = np.zeros((5, 2))
    neighbours_of = np.array([[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]])
    graph = affinity(points, neighbours_of)
    assert np.isfinite(graph.data).all() and np.allclose(graph.data[graph.data > 0.5], 1.0)


def brute_force(points: np.ndarray, k: int) -> np.ndarray:
    d = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_exact_neighbours_match_brute_force():
    points = np.random.default_rng(7).normal(size=(300, 8)).astype(np.float32)
    ours = neighbours.knn_indices(points, 5, seed=0)
    theirs = brute_force(points.astype(np.float64), 5)
    assert (ours == theirs).mean() > 0.99  # float32 distances may swap near-ties
    assert not (ours == np.arange(300)[:, None]).any()


def test_cell_by_cell_neighbours_recall_the_true_ones(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)
    monkeypatch.setattr(neighbours, "CELL_SIZE", 100)
    monkeypatch.setattr(neighbours, "MAX_CANDIDATES", 800)
    rng = np.random.default_rng(8)
    centres = rng.normal(0, 4, (6, 8))
    points = (centres[rng.integers(0, 6, 1200)] + rng.normal(size=(1200, 8))).astype(np.float32)
    ours = neighbours.knn_indices(points, 10, seed=0)
    theirs = brute_force(points.astype(np.float64), 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours, theirs, strict=True)])
    assert recall >= 0.9
    assert not (ours == np.arange(1200)[:, None]).any()


def test_identical_maps_in_one_huge_cell_still_get_neighbours(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 50)
    monkeypatch.setattr(neighbours, "CELL_SIZE", 50)
    monkeypatch.setattr(neighbours, "MAX_CANDIDATES", 120)
    points = np.zeros((400, 4), np.float32)
    points[:5] += 10.0  # a few outliers; the rest are one point 395 times
    ours = neighbours.knn_indices(points, 4, seed=0)
    assert ours.shape == (400, 4)
    assert not (ours == np.arange(400)[:, None]).any()


def test_identical_and_all_zero_maps_cluster_without_numerical_trouble():
    thumbs, _ = planted((30, 20), seed=7)
    thumbs[:25] = thumbs[0]  # 25 identical maps
    thumbs[30:40] = 0.0  # 10 all-zero maps (no relevance at all)
    result = spray_clusters(thumbs, np.arange(50), seed=0)
    assert sum(c.size for c in result.clusters) == 50
    assert all(np.isfinite(c.mean_map).all() for c in result.clusters)
    same = result.labels[:25]
    assert (same == same[0]).all()


@pytest.mark.parametrize(("thumbs", "ids", "match"), [
    (np.zeros((2, 32, 32)), [0, 1], "at least 3"),
    (np.zeros((5, 32, 32)), [0, 1], "n ids"),
    (np.zeros((5, 1024)), range(5), "n×H×W"),
])
def test_bad_input_is_refused(thumbs, ids, match):
    with pytest.raises(ValueError, match=match):
        spray_clusters(thumbs, list(ids), seed=0)


def sampled_then_assigned(thumbs: np.ndarray, ids: np.ndarray, cap: int, seed: int,
                          block: int):
    """The clustering of a seeded sample of `cap`, the rest assigned in blocks of `block`."""
    order, sampled = sample_order(len(ids), cap, seed)
    thumbs, ids = thumbs[order], ids[order]
    rest = [(ids[a:a + block], thumbs[a:a + block]) for a in range(sampled, len(ids), block)]
    return spray_clusters(thumbs[:sampled], ids[:sampled], seed=seed, rest=rest)


def by_id(result) -> dict[int, int]:
    return {int(i): c for c, cluster in enumerate(result.clusters) for i in cluster.members}


def test_a_sample_then_assign_finds_the_planted_strategies_for_every_map():
    thumbs, truth = planted((600, 250, 150), seed=10)
    ids = np.arange(5000, 6000)
    result = sampled_then_assigned(thumbs, ids, cap=200, seed=3, block=128)
    assert result.sampled == 200 and result.size == 1000
    assert [c.size for c in result.clusters] == [600, 250, 150]
    got = by_id(result)
    assert sorted(got) == ids.tolist()  # every map keeps its cluster, sampled or not
    assert adjusted_rand_score(truth, [got[i] for i in ids]) == pytest.approx(1.0)
    for cluster in result.clusters:
        members = cluster.members - 5000
        np.testing.assert_array_equal(cluster.members, np.sort(cluster.members))
        assert cluster.share == pytest.approx(len(members) / 1000)
        expected = unit_mean(thumbs[members]).mean(axis=0).reshape(32, 32)
        np.testing.assert_allclose(cluster.mean_map, expected, rtol=1e-5)


def test_sample_then_assign_equals_the_full_run():
    thumbs, _ = planted((300, 120, 60, 30), seed=11)
    ids = np.arange(510)
    full = by_id(spray_clusters(thumbs, ids, seed=5))
    sampled = by_id(sampled_then_assigned(thumbs, ids, cap=250, seed=5, block=64))
    assert adjusted_rand_score([full[i] for i in ids], [sampled[i] for i in ids]) == 1.0


def test_the_blocks_of_the_rest_change_nothing():
    thumbs, _ = planted((200, 100, 50), seed=12)
    ids = np.arange(350)
    one = sampled_then_assigned(thumbs, ids, cap=120, seed=2, block=1000)
    many = sampled_then_assigned(thumbs, ids, cap=120, seed=2, block=7)
    assert len(one.clusters) == len(many.clusters)
    for a, b in zip(one.clusters, many.clusters, strict=True):
        np.testing.assert_array_equal(a.members, b.members)
        np.testing.assert_allclose(a.mean_map, b.mean_map, rtol=1e-6)
    np.testing.assert_array_equal(one.labels, many.labels)


def test_the_sample_follows_its_seed_and_keeps_every_position_once():
    order, sampled = sample_order(1000, 100, seed=7)
    assert sampled == 100 and sorted(order.tolist()) == list(range(1000))
    assert (np.diff(order[:100]) > 0).all() and (np.diff(order[100:]) > 0).all()
    again, _ = sample_order(1000, 100, seed=7)
    np.testing.assert_array_equal(order, again)
    other, _ = sample_order(1000, 100, seed=8)
    assert set(other[:100].tolist()) != set(order[:100].tolist())
    everything, n = sample_order(50, 100, seed=7)
    assert n == 50 and everything.tolist() == list(range(50))


def test_assign_takes_the_cluster_of_most_nearest_points_ties_to_the_nearest(monkeypatch):
    monkeypatch.setattr(spray, "NEIGHBOURS", 4)
    points = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    queries = np.array([[0.4], [2.6], [10.2], [1.6]])
    # 0.4: 0, 1, 2, 3 -> clusters 0, 0, 1, 1: a tie, the nearest (point 0) is in cluster 0.
    # 2.6: 3, 2, 1, 0 -> 1, 1, 0, 0: a tie, cluster 1. 10.2: 4, 5, 3, 2 -> 2, 2, 1, 1: tie,
    # 2. 1.6: 2, 1, 3, 0 -> 1, 0, 1, 0: a tie, the nearest (point 2, at 0.4) is in 1.
    np.testing.assert_array_equal(spray.assign(points, labels, queries), [0, 1, 2, 1])
    five = np.array([[0.0], [0.1], [0.2], [3.0], [9.0]])
    # At 2.0 the nearest point (3.0) is in cluster 1, but three of its four are in 0.
    assert spray.assign(five, np.array([0, 0, 0, 1, 2]), np.array([[2.0]])).tolist() == [0]


def test_nearest_among_matches_brute_force(monkeypatch):
    monkeypatch.setattr(neighbours, "BLOCK_ENTRIES", 500)  # many blocks
    rng = np.random.default_rng(9)
    points = rng.normal(size=(200, 6))
    queries = rng.normal(size=(90, 6))
    d = ((queries[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    expected = np.argsort(d, axis=1, kind="stable")[:, :5]
    assert (neighbours.nearest_among(points, queries, 5) == expected).mean() > 0.99
