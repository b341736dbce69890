"""The input-dependence check of a channel's projections: DeconvNet on a model without
max-pooling gives every image the same projection of a unit, and is warned about; guided
backprop there, and DeconvNet after a max-pooling, follow their images and are not."""

from __future__ import annotations

import numpy as np
import pytest
from engine_testing import seeded_architecture

from shared.spec.model import Preprocessing
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps import project, scan_batch
from worker.kinds.top_activations.feature_maps.dependence import PROBES, alike_warning, probe_units
from worker.kinds.top_activations.feature_maps.topk import TopActivation

PREP = Preprocessing(input_size=32, resize=32)
METHODS = ["deconvnet", "guided_backprop", "gradient"]


@pytest.fixture(scope="module")
def mobilenet_engine():
    return Engine(seeded_architecture("mobilenet_v2"))


def channel_warnings(engine, images, layer, channel, why=""):
    """Each method's warning for one channel's top 9, as a projection chunk makes them."""
    units = scan_batch(engine, images, range(len(images)), layer, [channel], 9).entries()
    by_index = {i: images[i] for i in range(len(images))}
    own = project(engine, layer, units, by_index, METHODS, PREP)
    probes = project(engine, layer, probe_units(units), by_index, METHODS, PREP)
    return {m: alike_warning(own, probes, m, why) for m in METHODS}


def test_the_probes_are_the_first_units_on_the_next_units_images():
    units = [(4, TopActivation(i, 10.0 - i, (i, i + 1))) for i in (7, 2, 5, 9)]
    assert probe_units(units) == [(4, TopActivation(2, 10.0 - 7, (7, 8))),
                                  (4, TopActivation(5, 10.0 - 2, (2, 3))),
                                  (4, TopActivation(9, 10.0 - 5, (5, 6)))][:PROBES]
    assert probe_units(units[:2]) == [(4, TopActivation(2, 3.0, (7, 8))),
                                      (4, TopActivation(7, 8.0, (2, 3)))]
    assert probe_units(units[:1]) == []


@pytest.mark.parametrize(("layer", "channel"), [("features.4", 0), ("features.7", 3)])
def test_deconvnet_without_max_pooling_is_warned_about_and_the_others_not(
        mobilenet_engine, images32, layer, channel):
    warnings = channel_warnings(mobilenet_engine, images32, layer, channel, "; why")
    said = warnings["deconvnet"]
    assert said is not None and said.startswith("deconvnet: ") and said.endswith("; why")
    assert f"channel {channel}'s units give the same picture (median cosine 1.000" in said
    assert warnings["guided_backprop"] is None and warnings["gradient"] is None


def test_deconvnet_after_a_max_pooling_is_not_warned_about(resnet18_engine, images32):
    for channel in (0, 3):
        assert channel_warnings(resnet18_engine, images32, "layer1", channel) == dict.fromkeys(
            METHODS)


def test_the_same_projection_on_every_image_is_warned_about_and_zero_maps_are_left_out():
    from worker.kinds.top_activations.feature_maps.projections import Projection

    rng = np.random.default_rng(0)
    picture = rng.normal(size=(3, 8, 8)).astype(np.float32)

    def made(index: int, values: np.ndarray) -> Projection:
        return Projection(1, TopActivation(index, 1.0, (0, 0)), {"m": values}, (0, 0, 8, 8),
                          np.zeros((8, 8, 3), np.uint8))

    own = [made(i, picture) for i in range(3)]
    same = [made(i + 1, picture * 3) for i in range(3)]
    other = [made(i + 1, rng.normal(size=(3, 8, 8)).astype(np.float32)) for i in range(3)]
    assert "median cosine 1.000 over 3 units" in alike_warning(own, same, "m")
    assert alike_warning(own, other, "m") is None
    zero = [made(1, picture), made(2, np.zeros_like(picture)), made(3, np.zeros_like(picture))]
    assert "over 1 unit," in alike_warning(own, zero, "m")
    assert alike_warning(own, [made(1, np.zeros_like(picture))], "m") is None
    assert alike_warning([], [], "m") is None
