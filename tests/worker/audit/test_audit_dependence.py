"""Input dependence: measured on maps, and structural from the model alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.kinds.attribution.audit.dependence import (
    MIN_SAME_CLASS_PAIRS,
    input_dependence,
    probe_structure,
)


def test_identical_maps_earn_the_measured_warning():
    m = np.random.default_rng(0).normal(size=(3, 8, 8))
    result = input_dependence([m, 2 * m, 3 * m], [1, 2, 3], "deconvnet")
    assert result.median_cosine == pytest.approx(1.0)
    assert result.pairs == 3 and result.scope == "any"
    assert "deconvnet" in result.warning and "(measured)" in result.warning


def test_unrelated_maps_have_a_low_cosine_and_no_warning():
    rng = np.random.default_rng(1)
    maps = [rng.normal(size=(3, 8, 8)) for _ in range(6)]
    result = input_dependence(maps, [0] * 6, "gradient")
    assert abs(result.median_cosine) < 0.3 and result.warning is None
    assert result.scope == "same_class" and result.pairs == 15


def test_same_class_pairs_are_used_when_there_are_enough():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(3, 8, 8))
    # Class 0: five copies of one map (10 pairs, cosine 1). Class 1: five unrelated maps.
    maps = [base] * 5 + [rng.normal(size=(3, 8, 8)) for _ in range(5)]
    classes = [0] * 5 + [1] * 5
    result = input_dependence(maps, classes, "m")
    assert result.scope == "same_class"
    assert result.pairs == 20  # 10 in each class, both at least MIN_SAME_CLASS_PAIRS together
    # The median of ten 1s and ten small cosines, computed independently:
    units = [m.ravel() / np.linalg.norm(m) for m in maps]
    same = [units[i] @ units[j] for i in range(10) for j in range(i + 1, 10)
            if classes[i] == classes[j]]
    assert result.median_cosine == pytest.approx(float(np.median(same)))


def test_too_few_same_class_pairs_fall_back_to_all_pairs():
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(4,)) for _ in range(5)]
    result = input_dependence(maps, [0, 0, 1, 2, 3], "m")
    assert MIN_SAME_CLASS_PAIRS > 1 and result.scope == "any" and result.pairs == 10


def test_zero_maps_are_left_out():
    rng = np.random.default_rng(4)
    maps = [np.zeros(5), rng.normal(size=5), rng.normal(size=5)]
    assert input_dependence(maps, [0, 0, 0], "m").pairs == 1
    assert input_dependence([np.zeros(3)], [0], "m").median_cosine is None


def conv_net(pool: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), pool,
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


def test_deconvnet_without_max_pooling_is_structurally_input_independent():
    engine = Engine(conv_net(nn.AvgPool2d(2)))
    warning = probe_structure(engine, "deconvnet", 16)
    assert warning is not None and "structural" in warning
    # Independently: two unrelated images of one class get the same DeconvNet map.
    x = torch.stack([torch.rand(3, 16, 16), torch.randn(3, 16, 16)])
    maps = engine.attribute(x, methods=("deconvnet",), targets=ClassTarget(2))
    np.testing.assert_allclose(maps.images[0].maps[0].values, maps.images[1].maps[0].values,
                               rtol=1e-5, atol=1e-7)


def test_max_pooling_switches_make_deconvnet_depend_on_the_input():
    assert probe_structure(Engine(conv_net(nn.MaxPool2d(2))), "deconvnet", 16) is None


@pytest.mark.parametrize("method", ["gradient", "guided_backprop"])
def test_methods_reading_the_forward_pass_depend_on_the_input(method):
    assert probe_structure(Engine(conv_net(nn.AvgPool2d(2))), method, 16) is None


def test_the_gradient_of_a_linear_model_is_the_same_for_every_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).eval()
    assert probe_structure(Engine(model), "gradient", 8) is not None
