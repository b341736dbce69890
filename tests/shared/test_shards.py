"""Shards: each map found again by its row, and a top-k target's ranks stored beside them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from safetensors.numpy import load

from shared.storage.shards import ShardWriter


def _written(writer: ShardWriter) -> dict[str, np.ndarray]:
    out = io.BytesIO()
    writer.write(out)
    writer.close()
    return load(out.getvalue())


def test_a_topk_shard_keeps_every_rank_of_every_item_apart():
    rng = np.random.default_rng(0)
    maps = {(index, rank): rng.standard_normal((3, 4, 4)).astype(np.float32)
            for index in (5, 6) for rank in range(3)}
    writer = ShardWriter("float32")
    rows = {key: writer.add(1, key[0], values, key[1]) for key, values in maps.items()}
    tensors = _written(writer)
    for (index, rank), row in rows.items():
        assert int(tensors["index.1"][row]) == index and int(tensors["rank.1"][row]) == rank
        got = tensors["maps.1"][row] * tensors["scale.1"][row]
        np.testing.assert_allclose(got, maps[(index, rank)], rtol=1e-6)


def test_a_shard_of_single_targets_has_no_rank_tensor():
    writer = ShardWriter()
    writer.add(0, 0, np.ones((1, 2, 2), np.float32))
    assert sorted(_written(writer)) == ["index.0", "maps.0", "scale.0"]


def test_maps_with_and_without_a_rank_do_not_share_a_tensor():
    writer = ShardWriter()
    writer.add(0, 0, np.ones((1, 2, 2), np.float32), 0)
    with pytest.raises(ValueError, match="rank"):
        writer.add(0, 1, np.ones((1, 2, 2), np.float32))
    writer.close()
