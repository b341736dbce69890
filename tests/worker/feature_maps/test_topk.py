"""The running top-k: its total order, one entry per item, merging in any order, and its
serialized forms, against a plain-Python ranking written here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.kinds.top_activations.feature_maps.topk import TopActivation, TopK

CHANNELS = (5, 0, 2)


def reference(candidates, k):
    """Per channel: each item's best entry (highest value, then earliest position), then the
    k best items by (value descending, item ascending). NaN entries are never ranked."""
    out = {}
    for c in range(len(CHANNELS)):
        best = {}
        for item, values, positions in candidates:
            v, pos = values[c], positions[c]
            if math.isnan(v):
                continue
            key = (-v, pos)
            if item not in best or key < best[item][0]:
                best[item] = (key, v, pos)
        ranked = sorted(best.items(), key=lambda e: (-e[1][1], e[0]))[:k]
        out[CHANNELS[c]] = [TopActivation(item, float(np.float32(v)), pos)
                            for item, (_, v, pos) in ranked]
    return out


def fold(batches, k):
    top = TopK.empty("layer", k, CHANNELS)
    for batch in batches:
        items = [item for item, _, _ in batch]
        values = np.array([v for _, v, _ in batch], np.float32).reshape(len(batch), len(CHANNELS))
        positions = np.array([p for _, _, p in batch], np.int64).reshape(len(batch),
                                                                         len(CHANNELS), 2)
        top = top.update(values, positions, items)
    return top


# Values from a small set, so that ties between items are the rule, not the exception.
value = st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, float("nan")])
position = st.tuples(st.integers(0, 2), st.integers(0, 2))
entry = st.tuples(st.lists(value, min_size=3, max_size=3),
                  st.lists(position, min_size=3, max_size=3))


@st.composite
def chunked(draw):
    """Distinct items with random values, split into chunks, each into batches."""
    n = draw(st.integers(1, 30))
    items = draw(st.permutations(range(100, 100 + 3 * n, 3)))
    entries = [(item, *draw(entry)) for item in items]
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    chunks = [entries[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    return [[chunk[i:i + 3] for i in range(0, len(chunk), 3)] for chunk in chunks], entries


@settings(max_examples=80, deadline=None)
@given(chunked(), st.integers(1, 6), st.randoms(use_true_random=False))
def test_chunks_merged_in_any_order_equal_the_plain_ranking(split, k, rng):
    chunks, entries = split
    parts = [fold([b for b in chunk if b], k) for chunk in chunks]
    merged = TopK.merge(parts)
    expected = reference(entries, k)
    assert {c: merged.top(c) for c in CHANNELS} == expected
    rng.shuffle(parts)
    assert TopK.merge(parts) == merged
    assert TopK.merge([merged, *parts]) == merged  # a part merged twice changes nothing


def test_equal_activations_go_to_the_lower_item_index():
    top = TopK.empty("l", 2, [0]).update(np.ones((3, 1), np.float32),
                                         np.zeros((3, 1, 2), np.int64), [9, 4, 7])
    assert [t.index for t in top.top(0)] == [4, 7]
    higher = top.update(np.array([[1.5]], np.float32), np.zeros((1, 1, 2), np.int64), [12])
    assert [t.index for t in higher.top(0)] == [12, 4]


def test_an_item_offered_twice_keeps_its_best_entry_once():
    values = np.array([[1.0], [3.0], [3.0]], np.float32)
    positions = np.array([[[0, 0]], [[2, 1]], [[1, 5]]])
    top = TopK.empty("l", 3, [0])
    for row in range(3):
        top = top.update(values[row:row + 1], positions[row:row + 1], [8])
    assert top.top(0) == [TopActivation(8, 3.0, (1, 5))]


def test_nan_is_never_ranked_and_fewer_items_give_fewer_entries():
    top = TopK.empty("l", 4, [0, 1]).update(np.array([[np.nan, 2.0]], np.float32),
                                            np.zeros((1, 2, 2), np.int64), [0])
    assert top.top(0) == []
    assert top.top(1) == [TopActivation(0, 2.0, (0, 0))]


def test_size_does_not_grow_with_the_items_seen():
    rng = np.random.default_rng(0)
    top = TopK.empty("l", 5, range(4))
    sizes = []
    for start in range(0, 2000, 100):
        top = top.update(rng.normal(size=(100, 4)).astype(np.float32),
                         rng.integers(0, 7, (100, 4, 2)), range(start, start + 100))
        sizes.append(len(top.to_bytes()))
    assert top.values.shape == (4, 5)
    assert len(set(sizes)) == 1


def test_bytes_and_json_round_trip_exactly():
    rng = np.random.default_rng(1)
    top = TopK.empty("layer3.1", 3, [7, 1]).update(
        rng.normal(size=(5, 2)).astype(np.float32), rng.integers(0, 4, (5, 2, 2)), range(5))
    assert TopK.from_bytes(top.to_bytes()) == top
    assert TopK.from_json(json.loads(json.dumps(top.to_json()))) == top
    assert top.to_json()["channels"][0]["top"][0] == top.top(7)[0].to_json()
    assert set(top.to_json()["channels"][1]["top"][0]) == {"index", "activation", "position"}


def test_json_read_back_is_reranked():
    top = TopK.from_json({"layer": "l", "k": 2, "channels": [{"channel": 0, "top": [
        {"index": 3, "activation": 1.0, "position": [0, 0]},
        {"index": 1, "activation": 2.0, "position": [1, 1]},
    ]}]})
    assert [t.index for t in top.top(0)] == [1, 3]


@pytest.mark.parametrize("data", [b"", b"not an archive", TopK.empty("l", 2, [0]).to_bytes()[:40]])
def test_bytes_that_are_not_a_top_k_are_refused(data):
    with pytest.raises(ValueError, match="not a TopK archive"):
        TopK.from_bytes(data)


@pytest.mark.parametrize("other", [TopK.empty("m", 2, [0]), TopK.empty("l", 3, [0]),
                                   TopK.empty("l", 2, [1])])
def test_merging_different_scans_is_refused(other):
    with pytest.raises(ValueError, match="cannot merge"):
        TopK.merge([TopK.empty("l", 2, [0]), other])
    with pytest.raises(ValueError, match="nothing to merge"):
        TopK.merge([])


def test_update_checks_the_batch_shapes():
    top = TopK.empty("l", 2, [0, 1])
    with pytest.raises(ValueError, match="expected values 1×2"):
        top.update(np.zeros((1, 3), np.float32), np.zeros((1, 3, 2), np.int64), [0])
    with pytest.raises(ValueError, match=">= 0"):
        top.update(np.zeros((1, 2), np.float32), np.zeros((1, 2, 2), np.int64), [-1])


def test_entries_are_the_units_to_project_best_first():
    top = TopK.empty("l", 2, [3, 1]).update(np.array([[1.0, 4.0], [2.0, 3.0]], np.float32),
                                            np.zeros((2, 2, 2), np.int64), [0, 1])
    assert [(c, t.index) for c, t in top.entries()] == [(3, 1), (3, 0), (1, 0), (1, 1)]
    assert [(c, t.index) for c, t in top.entries([1])] == [(1, 0), (1, 1)]
