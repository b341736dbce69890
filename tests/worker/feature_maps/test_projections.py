"""Phase 2: each top activation's projections equal the engine's layer-position maps (and,
for DeconvNet, an independent reference), lie inside the unit's receptive field, and come
with the patch of the input that field covers."""

from __future__ import annotations

import numpy as np
import pytest
from attribution_refs import layer_gradient
from engine_testing import METHODS

from shared.errors import InputError
from shared.spec.model import Preprocessing
from shared.spec.targets import LayerTarget
from worker.kinds.top_activations.feature_maps import project, receptive_field, scan_batch
from worker.models.build import display_image

LAYER = "layer1.0.conv1"  # 8×8 at 32×32: units see 19×19 patches, smaller at the border
PREP = Preprocessing(input_size=32, resize=32)


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def projected(resnet18_engine, images32):
    top = scan_batch(resnet18_engine, images32, range(len(images32)), LAYER, [2, 9], 2)
    units = top.entries()
    images = {i: images32[i] for i in range(len(images32))}
    return units, project(resnet18_engine, LAYER, units, images, METHODS, PREP, batch_size=4)


def test_one_projection_per_unit_and_method_in_order(projected):
    units, projections = projected
    assert [(p.channel, p.top) for p in projections] == units
    assert all(set(p.maps) == set(METHODS) for p in projections)
    assert all(m.shape == (3, 32, 32) and m.dtype == np.float32
               for p in projections for m in p.maps.values())


def test_projections_equal_the_engines_layer_position_maps(projected, resnet18_engine,
                                                           images32):
    _, projections = projected
    for p in projections:
        target = LayerTarget(LAYER, p.channel, p.top.position)
        alone = resnet18_engine.attribute(images32[p.top.index][None], METHODS, target)
        for single in alone.images[0].maps:
            assert relative_error(p.maps[single.method], single.values) <= 1e-5


def test_deconvnet_projections_equal_an_independent_reference(projected, resnet18, images32):
    _, projections = projected
    for p in projections:
        expected = layer_gradient(resnet18, images32[p.top.index][None], LAYER, p.channel,
                                  p.top.position, method="deconvnet")[0]
        assert np.abs(expected).max() > 0
        assert relative_error(p.maps["deconvnet"], expected) <= 1e-4


def test_patches_are_the_receptive_field_cut_from_the_display_image(projected, resnet18,
                                                                    images32):
    _, projections = projected
    for p in projections:
        box = receptive_field(resnet18, LAYER, p.top.position, 32)
        assert p.patch_box == box
        x0, y0, x1, y1 = box
        np.testing.assert_array_equal(
            p.patch, display_image(images32[p.top.index], PREP)[y0:y1, x0:x1])
        for values in p.maps.values():  # a unit's map is zero outside what it can see
            outside = np.abs(values).sum(axis=0)
            outside[y0:y1, x0:x1] = 0
            assert not outside.any()


def test_a_unit_without_its_image_or_a_bad_batch_size_is_refused(projected, resnet18_engine,
                                                                  images32):
    units, _ = projected
    with pytest.raises(InputError, match=r"no input given for items \[\d+\]"):
        project(resnet18_engine, LAYER, units[:1], {}, ["deconvnet"], PREP)
    with pytest.raises(ValueError, match="batch_size"):
        project(resnet18_engine, LAYER, units, {}, ["deconvnet"], PREP, batch_size=0)
