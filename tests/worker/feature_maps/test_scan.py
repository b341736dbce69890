"""Phase 1: the scan's top-k equals a brute-force scan of every image, however the data
set is split into chunks (two workers, each several chunks, each several batches) and
whatever order the partial results are merged in."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from shared.errors import TargetError
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps import TopK, scan, scan_batch

from .references import brute_force_top, layer_outputs

CHUNK, BATCH = 6, 4


def split(x: torch.Tensor, items: list[int]):
    """Chunks of CHUNK items, each a list of (images, indices) batches of at most BATCH."""
    chunks = []
    for start in range(0, len(x), CHUNK):
        stop = min(start + CHUNK, len(x))
        chunks.append([(x[b:min(b + BATCH, stop)], items[b:min(b + BATCH, stop)])
                       for b in range(start, stop, BATCH)])
    return chunks


def scan_on_two_workers(engine, x, items, layer, channels, k) -> list[TopK]:
    """Worker A scans the even chunks, worker B the odd ones; each chunk is one partial."""
    chunks = split(x, items)
    return [scan(engine, chunk, layer, channels, k) for chunk in chunks[0::2] + chunks[1::2]]


def check_against_brute_force(model, engine, x, layer, channels, k):
    items = [int(i) for i in np.random.default_rng(5).permutation(len(x)) * 3 + 10]
    parts = scan_on_two_workers(engine, x, items, layer, channels, k)
    merged = TopK.merge(parts)
    batches = [images for chunk in split(x, items) for images, _ in chunk]
    outputs = layer_outputs(model, batches, layer)
    chosen = range(outputs.shape[1]) if channels == "all" else channels
    expected = brute_force_top(outputs, items, chosen, k)
    assert merged.channels == tuple(chosen)
    for c in chosen:
        got = merged.top(c)
        assert [(t.index, t.position) for t in got] == [(i, p) for i, _, p in expected[c]]
        np.testing.assert_allclose([t.activation for t in got], [v for _, v, _ in expected[c]],
                                   rtol=1e-6)
    for order in itertools.islice(itertools.permutations(parts), 0, None, 7):
        assert TopK.merge(order) == merged
    return merged


@pytest.mark.parametrize(("layer", "channels"), [
    ("maxpool", "all"),
    ("layer2.0.bn1", [0, 3, 64, 127]),  # followed by an in-place ReLU: taken before it
    ("layer3.1", [1, 2, 200]),
])
def test_resnet18_top_k_equals_brute_force(resnet18, resnet18_engine, images32, layer, channels):
    check_against_brute_force(resnet18, resnet18_engine, images32, layer, channels, k=5)


@pytest.fixture(scope="module")
def lite0_engine(lite0_model):
    return Engine(lite0_model)


@pytest.mark.parametrize(("layer", "channels"), [
    ("bn1", [0, 7, 31]),  # the stem, after its ReLU6
    ("blocks.4.1", [0, 79, 111]),  # an inverted-residual block's sum
])
def test_efficientnet_lite0_top_k_equals_brute_force(lite0_model, lite0_engine, layer,
                                                     channels):
    x = torch.randn(12, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    check_against_brute_force(lite0_model, lite0_engine, x, layer, channels, k=4)


class Constant(nn.Module):
    """A feature map equal everywhere: every image and position ties."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, 0.5)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_ties_go_to_the_lower_item_and_the_first_position():
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    engine = Engine(Constant())
    top = scan_batch(engine, x[:3], [40, 12, 31], "conv", [1], 4)
    top = scan_batch(engine, x[3:], [7, 50, 13], "conv", [1], 4, top)
    assert [(t.index, t.activation, t.position) for t in top.top(1)] == [
        (7, 0.5, (0, 0)), (12, 0.5, (0, 0)), (13, 0.5, (0, 0)), (31, 0.5, (0, 0))]


def test_a_mistyped_layer_lists_the_nearest_names(resnet18_engine, images32):
    with pytest.raises(TargetError, match=r"no module named 'layer2\.0\.bn3'.*nearest: "
                                          r"layer2\.0\.bn"):
        scan_batch(resnet18_engine, images32[:2], [0, 1], "layer2.0.bn3", [0], 3)


def test_a_layer_that_is_not_a_feature_map_is_refused(resnet18_engine, images32):
    with pytest.raises(TargetError, match=r"'fc' outputs shape \[N, 4\], which is not read "
                                          "as a grid"):
        scan_batch(resnet18_engine, images32[:2], [0, 1], "fc", [0], 3)


def test_a_channel_out_of_range_names_the_layer_size(resnet18_engine, images32):
    with pytest.raises(TargetError, match=r"64 is out of range; layer 'relu' has 64 channels"):
        scan_batch(resnet18_engine, images32[:2], [0, 1], "relu", [0, 64], 3)


def test_batch_and_partial_mismatches_are_refused(resnet18_engine, images32):
    partial = scan_batch(resnet18_engine, images32[:2], [0, 1], "relu", [0], 3)
    with pytest.raises(ValueError, match="not the top-4"):
        scan_batch(resnet18_engine, images32[2:4], [2, 3], "relu", [0], 4, partial)
    with pytest.raises(ValueError, match="3 indices for 2 images"):
        scan_batch(resnet18_engine, images32[:2], [0, 1, 2], "relu", [0], 3)
    with pytest.raises(ValueError, match="distinct"):
        scan_batch(resnet18_engine, images32[:2], [4, 4], "relu", [0], 3)
