"""A first layer set by hand to detect a red square, on images of which only some carry one:
the top 9 are exactly those images, and their patches are the squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shared.spec.model import Preprocessing
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps import TopK, channel_grid, project, scan
from worker.kinds.top_activations.feature_maps.grid import BACKGROUND, BLOCK_GAP, CELL_GAP

SIZE, SIDE, IMAGES, CARRIERS = 32, 5, 40, 9
PREP = Preprocessing(input_size=SIZE, resize=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
RED = (255, 0, 0)


def red_square_images(seed: int = 0):
    """Grey noise images; CARRIERS of them get a pure red SIDE×SIDE square somewhere."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(0.2, 0.8, (IMAGES, 1, SIZE, SIZE))
    pixels = np.clip(grey + rng.normal(0, 0.03, (IMAGES, 3, SIZE, SIZE)), 0, 1)
    carriers = sorted(int(i) for i in rng.choice(IMAGES, CARRIERS, replace=False))
    boxes = {}
    for i in carriers:
        y, x = (int(v) for v in rng.integers(0, SIZE - SIDE + 1, 2))
        pixels[i, :, y:y + SIDE, x:x + SIDE] = np.array([1.0, 0.0, 0.0])[:, None, None]
        boxes[i] = (x, y, x + SIDE, y + SIDE)
    mean, std = np.array(PREP.mean)[:, None, None], np.array(PREP.std)[:, None, None]
    return torch.tensor((pixels - mean) / std, dtype=torch.float32), carriers, boxes


class RedSquareNet(nn.Module):
    """Channel 0 of the first layer averages (red − green − blue) over a 5×5 window, less a
    threshold: only a window filled with red passes its ReLU. The rest is random."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 2, SIDE)  # no padding: unit (y, x) sees [y, y+5) × [x, x+5)
        with torch.no_grad():
            self.conv1.weight[0] = torch.tensor([1.0, -1.0, -1.0])[:, None, None] / SIDE**2
            self.conv1.bias[0] = -2.0
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(2, 4, 3)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(4, 2))

    def forward(self, x):
        return self.head(self.conv2(self.pool(self.relu1(self.conv1(x)))))


@pytest.fixture(scope="module")
def found():
    x, carriers, boxes = red_square_images()
    engine = Engine(RedSquareNet())
    halves = [[(x[s:s + 8], list(range(s, min(s + 8, e)))) for s in range(b, e, 8)]
              for b, e in ((0, 24), (24, IMAGES))]
    top = TopK.merge([scan(engine, half, "relu1", [0], CARRIERS) for half in halves])
    images = {i: x[i] for i in range(IMAGES)}
    projections = project(engine, "relu1", top.entries(), images, ["deconvnet"], PREP)
    return top, projections, carriers, boxes


def test_the_top_9_are_exactly_the_images_with_the_square(found):
    top, _, carriers, boxes = found
    assert sorted(t.index for t in top.top(0)) == carriers
    for t in top.top(0):
        x0, y0, _, _ = boxes[t.index]
        assert t.position == (y0, x0)
        assert t.activation == pytest.approx(4.0, abs=1e-4)  # 6 for pure red, less 2


def test_the_patches_are_the_squares(found):
    _, projections, _, boxes = found
    for p in projections:
        assert p.patch_box == boxes[p.top.index]
        assert (p.patch == RED).all()
        x0, y0, x1, y1 = p.patch_box
        inside = np.abs(p.maps["deconvnet"][:, y0:y1, x0:x1]).sum()
        assert inside > 0 and inside == pytest.approx(np.abs(p.maps["deconvnet"]).sum())


def test_the_picture_shows_nine_red_patches_beside_red_projections(found):
    _, projections, _, _ = found
    grid = channel_grid(projections, ["deconvnet"], columns=3).astype(int)
    block = 3 * SIDE * 10 + 2 * CELL_GAP  # 5×5 cells enlarged ten times, three a row
    assert grid.shape == (block, 2 * block + BLOCK_GAP, 3)
    patches = grid[:, block + BLOCK_GAP:]
    assert np.all(patches == RED, axis=-1).sum() == CARRIERS * (SIDE * 10) ** 2
    # DeconvNet projects the detector's (red − green − blue) back: red, not grey.
    drawn = grid[:, :block][np.any(grid[:, :block] != BACKGROUND, axis=-1)]
    assert drawn[:, 0].mean() > 200 and drawn[:, 1:].mean() < 60
