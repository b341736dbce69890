"""A synthetic data set whose class is decided by a pattern in a known box, and a tiny CNN.

Deterministic (seeded numpy and torch). Class 0 is a bright cross, class 1 a hollow square
of the same number of pixels and brightness, both inside `BOX` on Gaussian noise, so a model
must look inside the box and at the shape to tell them apart. `trained_toy_cnn()` trains the
CNN in a few seconds on two CPU cores and caches it per process, for the engine tests and
for any service test that wants a model whose maps are known to be meaningful.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIZE = 32
BOX = (8, 16, 16, 24)  # top, bottom, left, right: rows 8..15, columns 16..23
CLASSES = ("cross", "square")
TRAIN_SEED, TEST_SEED = 0, 1


def _patterns() -> np.ndarray:
    side = BOX[1] - BOX[0]
    cross = np.zeros((side, side), np.float32)
    cross[side // 2 - 1: side // 2 + 1, :] = 1
    cross[:, side // 2 - 1: side // 2 + 1] = 1
    square = np.zeros((side, side), np.float32)
    square[[0, -1], :] = 1
    square[:, [0, -1]] = 1
    assert cross.sum() == square.sum()  # the same amount of light: only the shape differs
    return np.stack([cross, square])


def make_dataset(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images (n×3×SIZE×SIZE float32) and labels (n int64), the same for the same seed."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.5, (n, 3, SIZE, SIZE)).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), n)
    brightness = rng.uniform(1.5, 2.5, (n, 1, 1, 1)).astype(np.float32)
    top, bottom, left, right = BOX
    images[:, :, top:bottom, left:right] += brightness * _patterns()[labels][:, None]
    return torch.from_numpy(images), torch.from_numpy(labels)


def box_fraction() -> float:
    """The share of the image the box covers: a uniform map's mass inside it."""
    top, bottom, left, right = BOX
    return (bottom - top) * (right - left) / SIZE**2


class TinyCNN(nn.Module):
    """Three conv blocks and a global max pool (the evidence comes from where the pattern is).

    Its ReLUs are one in-place module used twice and two functional calls (`F.relu`,
    `torch.relu`), the cases module hooks miss.
    """

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 32))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.relu(self.conv3(x))
        return self.fc(self.relu(self.head(x)))


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int = 3,
          batch: int = 64, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch):
            idx = order[start: start + batch]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@functools.cache
def trained_toy_cnn() -> TinyCNN:
    """The tiny CNN trained on 1,024 seeded images (a few seconds on two cores); eval mode.

    Cached per process: treat it as read-only (the engine copies it anyway).
    """
    torch.manual_seed(TRAIN_SEED)
    images, labels = make_dataset(1024, TRAIN_SEED)
    return train(TinyCNN(), images, labels)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())
