"""The parametrizations: any Fourier spectrum is a valid image, `assign` inverts `image`, the
colour decorrelation and frequency scaling are Olah et al.'s, and each image's start comes
from its own generator alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.spec.model import Preprocessing
from worker.kinds.visualize.parametrizations import (
    COLOR_SQRT,
    FourierImage,
    Normalization,
    PixelImage,
)

PREP = Preprocessing()
NORM = Normalization(PREP, torch.device("cpu"))


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def pixels(x: torch.Tensor) -> torch.Tensor:
    return NORM.pixels(x)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), magnitude=st.floats(1e-3, 1e4), size=st.integers(4, 33))
def test_any_fourier_spectrum_is_an_image_in_the_valid_range(seed, magnitude, size):
    param = FourierImage(generators(seed), size, NORM)
    with torch.no_grad():
        param.tensor.mul_(magnitude / 0.01)
    x = pixels(param.image().detach())
    assert x.shape == (1, 3, size, size)
    assert torch.isfinite(x).all()
    assert float(x.min()) >= -1e-6 and float(x.max()) <= 1 + 1e-6


@pytest.mark.parametrize("size", [16, 17])
def test_fourier_assign_inverts_image(size):
    target = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    target = target * 0.98 + 0.01  # inside (0, 1), where the sigmoid is invertible
    param = FourierImage(generators(0, 1), size, NORM)
    param.assign(NORM.normalize(target))
    torch.testing.assert_close(pixels(param.image().detach()), target, rtol=0, atol=1e-4)


def test_fourier_assign_of_some_rows_leaves_the_others():
    param = FourierImage(generators(0, 1, 2), 8, NORM)
    before = param.tensor.detach().clone()
    grey = NORM.normalize(torch.full((1, 3, 8, 8), 0.5))
    param.assign(grey, rows=[1])
    torch.testing.assert_close(pixels(param.image().detach()[1:2]), torch.full((1, 3, 8, 8), 0.5),
                               rtol=0, atol=1e-5)
    assert torch.equal(param.tensor.detach()[[0, 2]], before[[0, 2]])


def test_fourier_image_is_the_papers_formula_computed_independently():
    size = 12
    param = FourierImage(generators(5), size, NORM)
    z = param.tensor.detach().double().numpy()[0]
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    scale = 1.0 / np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1.0 / size)
    spectrum = (z[..., 0] + 1j * z[..., 1]) * scale
    t = np.fft.irfft2(spectrum, s=(size, size), norm="ortho") / 4
    c = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    c = c / np.linalg.norm(c, axis=0).max()
    rgb = 1 / (1 + np.exp(-np.einsum("ck,khw->chw", c, t)))
    np.testing.assert_allclose(pixels(param.image().detach())[0].numpy(), rgb, atol=1e-5)
    np.testing.assert_allclose(COLOR_SQRT.numpy(), c, atol=1e-7)


def test_fourier_start_is_nearly_grey_and_low_frequencies_dominate_a_unit_step():
    param = FourierImage(generators(0), 32, NORM)
    start = pixels(param.image().detach())
    assert float((start - 0.5).abs().max()) < 0.1
    # The same step on the lowest and on the highest frequency coefficient: the low one
    # changes the image far more (the 1/f scaling).
    changes = []
    for index in ((0, 0, 1, 0, 0), (0, 0, 16, 16, 0)):
        moved = FourierImage(generators(0), 32, NORM)
        with torch.no_grad():
            moved.tensor[index] += 0.1
        changes.append(float((moved.image() - param.image()).detach().abs().sum()))
    assert changes[0] > 10 * changes[1]


def test_pixel_image_starts_near_the_mean_colour_and_clamps_to_the_valid_range():
    param = PixelImage(generators(0, 1), 16, NORM)
    assert param.image() is param.tensor and param.tensor.requires_grad
    assert 0.05 < float(param.tensor.detach().std()) < 0.15
    with torch.no_grad():
        param.tensor.mul_(100)
    param.project()
    x = pixels(param.tensor.detach())
    assert float(x.min()) >= -1e-6 and float(x.max()) <= 1 + 1e-6
    assert float((x < 1e-6).float().mean()) > 0.4 and float((x > 1 - 1e-6).float().mean()) > 0.4
    param.assign(NORM.normalize(torch.full((1, 3, 16, 16), 0.25)), rows=[0])
    torch.testing.assert_close(pixels(param.tensor.detach()[:1]),
                               torch.full((1, 3, 16, 16), 0.25))


@pytest.mark.parametrize("kind", [PixelImage, FourierImage])
def test_each_start_depends_only_on_its_own_generator(kind):
    alone = kind(generators(7), 16, NORM).image().detach()
    together = kind(generators(3, 7, 9), 16, NORM).image().detach()
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[1])
