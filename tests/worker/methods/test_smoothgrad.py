"""SmoothGrad against Captum's NoiseTunnel with the same noise, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum_refs import captum_smoothgrad, relative_error

from shared.seeds import item_seed
from shared.spec.methods import method_spec
from shared.spec.targets import ClassTarget
from worker.engine.core import Engine

CLASSES = [1, 3]


def maps_of(result, position: int = 0) -> np.ndarray:
    return np.stack([image.maps[position].values for image in result.images])


@pytest.mark.parametrize("architecture", ["resnet18", "vgg11"])
@pytest.mark.parametrize(("base", "variant"), [("gradient", "mean"),
                                               ("gradient", "vargrad"),
                                               ("guided_backprop", "squared")])
def test_equals_captums_noise_tunnel(architecture, base, variant, request):
    model = request.getfixturevalue(architecture)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    # Position 1: the noise comes from the method's position in the call.
    spec = method_spec("smoothgrad", samples=3, noise=0.2, base=base, variant=variant)
    result = Engine(model).attribute(x, ["gradient", spec], [ClassTarget(c) for c in CLASSES])
    theirs = captum_smoothgrad(model, x, CLASSES, samples=3, noise=0.2, base=base,
                               variant=variant, position=1)
    assert relative_error(maps_of(result, 1), theirs) <= 1e-4
    coverage = result.coverage[1]
    assert coverage.complete if base == "guided_backprop" else coverage.overridden == 0


def test_the_noise_level_is_a_fraction_of_each_images_range(tiny_cnn):
    """Scaling an image and its range by 10 scales the noise: a ReLU network's gradient
    at 10·(x + ε) of a bias-free net equals its gradient at x + ε."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 2, bias=False))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    spec = method_spec("smoothgrad", samples=4, noise=0.3)
    small = maps_of(Engine(model).attribute(x, [spec], ClassTarget(0)))
    large = maps_of(Engine(model).attribute(10 * x, [spec], ClassTarget(0)))
    np.testing.assert_allclose(large, small, rtol=1e-5, atol=1e-7)
    noiseless = maps_of(Engine(model).attribute(x, ["gradient"], ClassTarget(0)))
    assert not np.allclose(small, noiseless, rtol=1e-3)


def test_variance_falls_as_samples_grow(trained_cnn):
    from toy_patterns import TEST_SEED, make_dataset

    x, _ = make_dataset(1, TEST_SEED)
    engine = Engine(trained_cnn)

    def spread(samples: int) -> float:
        """Per-pixel variance of the map over 8 independent seeds, summed over pixels."""
        spec = method_spec("smoothgrad", samples=samples)
        maps = np.stack([maps_of(engine.attribute(x, [spec], ClassTarget(0), seeds=[seed]))[0]
                         for seed in range(8)])
        return float(maps.var(axis=0).sum())

    few, many = spread(2), spread(32)
    print(f"variance over seeds: {few:.3g} at 2 samples, {many:.3g} at 32")
    assert many < few / 4  # 1/n would give 1/16


def test_a_seeded_map_is_reproducible_and_independent_of_the_batch(tiny_cnn, tiny_images):
    spec = method_spec("smoothgrad", samples=5)
    seeds = [item_seed(7, i) for i in range(3)]
    alone = [maps_of(Engine(tiny_cnn).attribute(tiny_images[i:i + 1], [spec], ClassTarget(1),
                                                seeds=[seeds[i]]))[0] for i in range(3)]
    together = maps_of(Engine(tiny_cnn).attribute(tiny_images, [spec], ClassTarget(1),
                                                  seeds=seeds))
    # A budget of about two rows a pass: passes mix the samples of two images.
    rows: list[int] = []
    tiny_cnn.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    tight = Engine(tiny_cnn)
    per_row = tight.footprint(tiny_images[:1]).per_row(grad=True)
    tight.memory_budget_mb = (2.5 * per_row + 3 * 3 * tiny_images[0].numel() * 4) / 2**20
    rows.clear()
    chunked = maps_of(tight.attribute(tiny_images.flip(0), [spec], ClassTarget(1),
                                      seeds=seeds[::-1]))[::-1]
    assert rows[1:] == [2] * 7 + [1]  # after the one forward pass of the three images
    for i in range(3):
        np.testing.assert_allclose(together[i], alone[i], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(chunked[i], alone[i], rtol=1e-5, atol=1e-7)
    again = maps_of(Engine(tiny_cnn).attribute(tiny_images, [spec], ClassTarget(1), seeds=seeds))
    np.testing.assert_array_equal(again, together)
    other = maps_of(Engine(tiny_cnn).attribute(tiny_images, [spec], ClassTarget(1)))
    assert not np.allclose(other, together, rtol=1e-3)


def test_two_configurations_are_two_positions_with_their_own_noise(tiny_cnn, tiny_images):
    a = method_spec("smoothgrad", samples=4)
    b = method_spec("smoothgrad", samples=4, noise=0.3)
    result = Engine(tiny_cnn).attribute(tiny_images, [a, a.with_params(), b], ClassTarget(0))
    assert [(m.method, m.position) for m in result.images[0].maps] == [
        ("smoothgrad", 0), ("smoothgrad", 1), ("smoothgrad", 2)]
    # The same configuration at another position draws other noise.
    assert not np.allclose(maps_of(result, 0), maps_of(result, 1), rtol=1e-3)
    assert set(result.coverage) == {0, 1, 2}
