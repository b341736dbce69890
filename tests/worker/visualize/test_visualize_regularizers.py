"""Each regularizer against an independent reference, and its property: blur lowers the
high-frequency energy, the clips zero the pixels below their percentile, decay shrinks the
image, and the penalties fall as their weight rises in a real optimization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from shared.spec.model import Preprocessing
from shared.spec.visualize import (
    AlphaNorm,
    Blur,
    Regularizers,
    TotalVariation,
    parse_visualize_spec,
)
from worker.engine.core import Engine
from worker.kinds.visualize import VisualizationRun
from worker.kinds.visualize.regularizers import (
    alpha_norm,
    apply_operations,
    gaussian_blur,
    has_operations,
    penalty,
    total_variation,
)

OFF = Regularizers(jitter=0, scale=(1.0, 1.0), rotate=0.0)


@pytest.fixture
def noise() -> torch.Tensor:
    return torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))


def high_frequency_energy(x: torch.Tensor) -> float:
    """Spectral energy at frequencies above a quarter of the sampling rate."""
    spectrum = torch.fft.fft2(x).abs().square()
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    return float(spectrum[..., (fy > 0.25) | (fx > 0.25)].sum())


# --- blur -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_blur_matches_scipys_gaussian_filter(noise, sigma):
    out = gaussian_blur(noise, sigma)
    radius = int(np.ceil(3 * sigma))
    # scipy's "mirror" is torch's "reflect": the edge pixel is not repeated.
    expected = ndimage.gaussian_filter(noise.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror",
                                       truncate=radius / sigma)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_blur_lowers_high_frequency_energy_and_keeps_the_mean(noise):
    before = high_frequency_energy(noise)
    weaker = high_frequency_energy(gaussian_blur(noise, 0.5))
    stronger = high_frequency_energy(gaussian_blur(noise, 1.5))
    assert stronger < 0.05 * before and weaker < 0.6 * before and stronger < weaker
    torch.testing.assert_close(gaussian_blur(noise, 1.0).mean(dim=(2, 3)),
                               noise.mean(dim=(2, 3)), atol=0.02, rtol=0)


def test_blur_runs_only_every_n_steps(noise):
    reg = Regularizers(blur=Blur(every=3, sigma=1.0))
    assert [has_operations(reg, step) for step in range(1, 7)] == [False, False, True] * 2
    torch.testing.assert_close(apply_operations(noise, None, reg, 3), gaussian_blur(noise, 1.0))
    assert torch.equal(apply_operations(noise, None, reg, 2), noise)


# --- clipping -------------------------------------------------------------------------------

def assert_clipped_below_percentile(out, x, score, percentile):
    for i in range(x.shape[0]):
        zeroed = (out[i] == 0).all(dim=0)
        flat = score[i].flatten()
        threshold = np.percentile(flat.numpy(), percentile)
        np.testing.assert_array_equal(zeroed.numpy(), (score[i] < threshold).numpy())
        assert abs(float(zeroed.float().mean()) - percentile / 100) < 0.01
        torch.testing.assert_close(out[i][:, ~zeroed], x[i][:, ~zeroed], rtol=0, atol=0)


@pytest.mark.parametrize("percentile", [10.0, 50.0, 90.0])
def test_clip_norm_zeroes_the_pixels_of_lowest_norm(noise, percentile):
    out = apply_operations(noise, None, Regularizers(clip_norm=percentile), 1)
    score = torch.sqrt((noise ** 2).sum(dim=1))
    assert_clipped_below_percentile(out, noise, score, percentile)


@pytest.mark.parametrize("percentile", [10.0, 50.0])
def test_clip_contribution_zeroes_the_pixels_of_lowest_contribution(noise, percentile):
    grad = torch.randn(noise.shape, generator=torch.Generator().manual_seed(2))
    out = apply_operations(noise, grad, Regularizers(clip_contribution=percentile), 1)
    score = (noise * grad).sum(dim=1).abs()
    assert_clipped_below_percentile(out, noise, score, percentile)
    # Where the image times the gradient is large, the pixel stays even if its norm is small.
    assert not torch.equal(out, apply_operations(noise, None, Regularizers(clip_norm=percentile),
                                                 1))


def test_clip_contribution_needs_the_gradient(noise):
    with pytest.raises(ValueError, match="gradient"):
        apply_operations(noise, None, Regularizers(clip_contribution=5.0), 1)


def test_l2_decays_the_image_toward_the_mean_colour(noise):
    out = apply_operations(noise, None, Regularizers(l2=0.1), 1)
    torch.testing.assert_close(out, 0.9 * noise)
    assert not has_operations(Regularizers(), 1)


# --- penalties ------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_total_variation_matches_a_numpy_reference(noise, beta):
    x = noise.numpy().astype(np.float64)
    expected = []
    for image in x:
        dy = image[:, 1:, :-1] - image[:, :-1, :-1]
        dx = image[:, :-1, 1:] - image[:, :-1, :-1]
        expected.append(np.mean((dy ** 2 + dx ** 2 + 1e-8) ** (beta / 2)))
    np.testing.assert_allclose(total_variation(noise, beta).numpy(), expected, rtol=1e-5)


def test_total_variation_is_zero_for_a_flat_image_and_differentiable_there():
    flat = torch.full((1, 3, 8, 8), 0.3, requires_grad=True)
    value = total_variation(flat, 1.0)
    (grad,) = torch.autograd.grad(value.sum(), flat)
    assert float(value.detach()) < 1e-3 and torch.isfinite(grad).all()


def test_alpha_norm_matches_a_numpy_reference(noise):
    expected = np.mean(np.abs(noise.numpy().astype(np.float64)) ** 6, axis=(1, 2, 3))
    np.testing.assert_allclose(alpha_norm(noise, 6.0).numpy(), expected, rtol=1e-5)


def test_penalty_weights_each_term(noise):
    reg = Regularizers(tv=TotalVariation(2.0, 0.5), alpha_norm=AlphaNorm(3.0, 0.25))
    expected = 0.5 * total_variation(noise, 2.0) + 0.25 * alpha_norm(noise, 3.0)
    torch.testing.assert_close(penalty(noise, reg), expected)
    assert penalty(noise, Regularizers()) is None


def optimized(model, regularizers: dict, steps: int = 12) -> np.ndarray:
    """The image after a short class visualization of a tiny CNN at 32 px, pixel space."""
    spec = parse_visualize_spec(
        {"model": "m", "objective": {"class": 1}, "steps": steps, "lr": 0.1, "size": 32,
         "snapshot_every": 0,
         "regularizers": {"parametrization": "pixel", "jitter": None, "scale": None,
                          "rotate": None, **regularizers}},
        max_steps=100)
    run = VisualizationRun.start(Engine(model), spec, spec.items(),
                                 preprocessing=Preprocessing(input_size=32, resize=32))
    run.step(steps)
    return run.images()


def test_total_variation_of_the_result_falls_as_its_weight_rises(tiny_cnn):
    tvs = [float(total_variation(torch.from_numpy(optimized(tiny_cnn, {"tv": {"weight": w}})),
                                 2.0))
           for w in (0.0, 1.0, 10.0)]
    assert tvs[0] > tvs[1] > tvs[2]
    assert tvs[2] < 0.5 * tvs[0]


def test_alpha_norm_of_the_result_falls_as_its_weight_rises(tiny_cnn):
    norms = [float(alpha_norm(torch.from_numpy(
        optimized(tiny_cnn, {"alpha_norm": {"alpha": 4, "weight": w}})), 4.0))
        for w in (0.0, 0.1, 1.0)]
    assert norms[0] > norms[1] > norms[2]


def test_blur_and_decay_in_a_run_lower_high_frequencies_and_size(tiny_cnn):
    plain = torch.from_numpy(optimized(tiny_cnn, {}))
    blurred = torch.from_numpy(optimized(tiny_cnn, {"blur": {"every": 1, "sigma": 1.0}}))
    decayed = torch.from_numpy(optimized(tiny_cnn, {"l2": 0.2}))
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(plain)
    assert float(decayed.norm()) < 0.8 * float(plain.norm())
