"""On a CNN trained to find a pattern in a known box, every method's mass lies in the box."""

from __future__ import annotations

import numpy as np
import pytest
from engine_testing import METHODS
from toy_patterns import BOX, TEST_SEED, accuracy, box_fraction, make_dataset

from shared.media.render import reduce_channels
from worker.engine.core import Engine


def test_the_data_set_is_deterministic():
    a, la = make_dataset(8, TEST_SEED)
    b, lb = make_dataset(8, TEST_SEED)
    assert (a == b).all() and (la == lb).all()
    assert 0 < int(la.sum()) < 8


def test_the_toy_model_learned_the_task(trained_cnn):
    images, labels = make_dataset(256, TEST_SEED)
    assert accuracy(trained_cnn, images, labels) >= 0.95


@pytest.mark.parametrize("method", METHODS)
def test_attribution_mass_is_in_the_pattern_box(trained_cnn, method):
    images, _ = make_dataset(32, TEST_SEED)
    result = Engine(trained_cnn).attribute(images, methods=(method,))
    top, bottom, left, right = BOX
    shares = []
    for image in result.images:
        mass = reduce_channels(image.maps[0].values, "sum_abs")
        shares.append(mass[top:bottom, left:right].sum() / mass.sum())
    share = float(np.mean(shares))
    print(f"{method}: {share:.1%} of the attribution mass in the box, "
          f"{share / box_fraction():.1f}x a uniform map ({box_fraction():.1%})")
    assert share >= 3 * box_fraction()
    assert float(np.min(shares)) >= 1.5 * box_fraction()
