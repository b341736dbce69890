"""Integrated Gradients against Captum, its completeness, and its baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum_refs import captum_integrated_gradients, relative_error
from engine_testing import IMAGENET_MEAN as MEAN
from engine_testing import IMAGENET_STD as STD

from shared.errors import InputError, SpecError
from shared.seeds import item_seed, method_seed
from shared.spec.inputs import InputRef
from shared.spec.methods import method_spec
from shared.spec.targets import ClassTarget, TopKTarget
from worker.engine.baselines import blurred
from worker.engine.core import Engine
from worker.engine.methods.integrated_gradients import quadrature

CLASSES = [1, 3]


def maps_and_deltas(result, position: int = 0) -> tuple[np.ndarray, np.ndarray]:
    maps = [image.maps[position] for image in result.images]
    return (np.stack([m.values for m in maps]),
            np.array([m.extras["convergence_delta"] for m in maps]))


def normalized(pixels: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    return (pixels - mean) / std


@pytest.mark.parametrize("architecture", ["resnet18", "vgg11"])
@pytest.mark.parametrize(("rule", "baseline"), [("gausslegendre", "black"),
                                                ("riemann_trapezoid", "blurred")])
def test_equals_captum(architecture, rule, baseline, request):
    model = request.getfixturevalue(architecture)
    x = normalized(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    spec = method_spec("integrated_gradients", steps=8, rule=rule, baseline=baseline)
    result = Engine(model, mean=MEAN, std=STD).attribute(x, [spec],
                                                         [ClassTarget(c) for c in CLASSES])
    ours, deltas = maps_and_deltas(result)
    # Both sides start from the same tensor: a baseline one ulp off is enough for vgg11's ReLU
    # gates and max-pool switches to move the map beyond the bound on some CPUs. (The blur
    # itself is checked against scipy in test_baselines.py.)
    start = normalized(torch.zeros(2, 3, 32, 32)) if baseline == "black" else blurred(x)
    theirs, their_deltas = captum_integrated_gradients(model, x, CLASSES, start, 8, rule)
    if rule == "riemann_trapezoid":
        # Captum weighs the trapezoid's 8 points 1/8 instead of 1/7 (see `quadrature`).
        their_sums = theirs.reshape(2, -1).sum(1)
        gap = their_sums - their_deltas
        theirs = theirs * 8 / 7
        their_deltas = theirs.reshape(2, -1).sum(1) - gap
    assert relative_error(ours, theirs) <= 1e-4
    np.testing.assert_allclose(deltas, their_deltas, atol=1e-4 * np.abs(theirs).sum())
    # The path's gradients run autograd's own rule: counted, never overridden.
    coverage = result.coverage[0]
    assert coverage.relu_calls > 0 and coverage.overridden == 0 and coverage.applied > 0


def test_completeness_error_is_below_one_percent_at_200_gauss_legendre_steps(trained_cnn):
    from toy_patterns import TEST_SEED, make_dataset

    x, _ = make_dataset(2, TEST_SEED)
    spec = method_spec("integrated_gradients", steps=200)
    result = Engine(trained_cnn).attribute(x, [spec], ClassTarget(0))
    maps, deltas = maps_and_deltas(result)
    with torch.no_grad():
        gap = (trained_cnn(x)[:, 0] - trained_cnn(torch.zeros_like(x))[:, 0]).numpy()
    # Independently of the reported delta: the map's sum against f(x) - f(black).
    np.testing.assert_allclose(maps.reshape(2, -1).sum(1) - gap, deltas, atol=1e-3 * abs(gap).max())
    assert np.all(np.abs(deltas) < 0.01 * np.abs(gap)), (deltas, gap)


def test_quadrature_points_are_captums_and_weights_sum_to_one():
    from captum.attr._utils.approximation_methods import approximation_parameters

    for rule in ("gausslegendre", "riemann_trapezoid"):
        step_sizes, alphas = approximation_parameters(rule)
        points, weights = quadrature(rule, 7)
        np.testing.assert_allclose(points, alphas(7), rtol=1e-6, atol=1e-7)
        assert sum(weights) == pytest.approx(1, abs=1e-12)
        expected = step_sizes(7) if rule == "gausslegendre" else np.array(step_sizes(7)) * 7 / 6
        np.testing.assert_allclose(weights, expected, rtol=1e-6)
    # Both integrate x^2 on [0, 1] (1/3): Gauss-Legendre exactly, the trapezoid to O(h^2).
    for rule, tol in (("gausslegendre", 1e-12), ("riemann_trapezoid", 1 / 6**2)):
        points, weights = quadrature(rule, 7)
        assert sum(w * a**2 for a, w in zip(points, weights, strict=True)) == pytest.approx(
            1 / 3, abs=tol)


def test_the_uniform_baseline_is_seeded_per_image(tiny_cnn, tiny_images):
    spec = method_spec("integrated_gradients", steps=4, baseline="uniform")
    engine = Engine(tiny_cnn, mean=MEAN, std=STD)
    seeds = [item_seed(3, i) for i in range(3)]
    result = engine.attribute(tiny_images, ["gradient", spec], ClassTarget(2), seeds=seeds)
    ours, _ = maps_and_deltas(result, 1)
    for i in range(3):  # the baseline written out from its definition
        pixels = torch.rand((3, 32, 32), generator=torch.Generator().manual_seed(
            method_seed(seeds[i], 1)))
        theirs, _ = captum_integrated_gradients(tiny_cnn, tiny_images[i:i + 1], [2],
                                                normalized(pixels)[None], 4, "gausslegendre")
        assert relative_error(ours[i], theirs[0]) <= 1e-4
    alone, _ = maps_and_deltas(engine.attribute(tiny_images[1:2], ["gradient", spec],
                                                ClassTarget(2), seeds=seeds[1:2]), 1)
    np.testing.assert_allclose(alone[0], ours[1], rtol=1e-5, atol=1e-7)


def test_a_tensor_baseline_and_topk_targets(tiny_cnn, tiny_images):
    baseline = torch.full((3, 32, 32), 0.25)
    spec = method_spec("integrated_gradients", steps=5).with_params(baseline=baseline)
    result = Engine(tiny_cnn).attribute(tiny_images, [spec], TopKTarget(2))
    for i, image in enumerate(result.images):
        assert [m.position for m in image.maps] == [0, 0]
        classes = [m.target["class"] for m in image.maps]
        theirs, _ = captum_integrated_gradients(tiny_cnn, tiny_images[i:i + 1].expand(2, -1, -1,
                                                -1), classes, baseline[None], 5, "gausslegendre")
        for rank, m in enumerate(image.maps):
            assert relative_error(m.values, theirs[rank]) <= 1e-4


def test_baselines_that_cannot_be_used_are_refused(tiny_cnn, tiny_images):
    engine = Engine(tiny_cnn)
    spec = method_spec("integrated_gradients")
    with pytest.raises(SpecError, match=r"methods\[1\].baseline.*resolved"):
        engine.attribute(tiny_images, ["gradient", spec.with_params(
            baseline=InputRef("upload", "ref"))])
    with pytest.raises(InputError, match=r"shape \[3, 16, 16\]"):
        engine.attribute(tiny_images, [spec.with_params(baseline=torch.zeros(3, 16, 16))])
