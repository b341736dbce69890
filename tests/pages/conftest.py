"""Fixtures of the page tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def images(tmp_path):
    """Write `n` small seeded RGB PNGs and return their paths."""
    import numpy as np
    from PIL import Image

    def make(n: int, size: int = 48) -> list:
        rng = np.random.default_rng(n)
        paths = []
        for i in range(n):
            path = tmp_path / f"img{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        return paths

    return make
