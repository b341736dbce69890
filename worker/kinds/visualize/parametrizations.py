"""Image parametrizations: the tensor the optimizer changes, and the image it stands for.

Every parametrization hands out a batch of images in the model's normalized space and can be
set to a given image (`assign`), which is how a DeepDream starts from its input and how the
operations between steps (blur, clipping) reach a Fourier-parametrized image.
"""

from __future__ import annotations

import torch

from shared.spec.model import Preprocessing

# The square root of ImageNet's colour covariance (Olah et al. 2017; Lucid's values), scaled
# so that its longest column has unit length.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
# Pixels a sigmoid can reach exactly enough to be inverted by `assign`.
_EPS = 1e-4


class Normalization:
    """The model's normalization on a device: pixels in [0, 1] ↔ normalized values."""

    def __init__(self, prep: Preprocessing, device: torch.device) -> None:
        self.mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1)
        self.low = -self.mean / self.std  # black
        self.high = (1 - self.mean) / self.std  # white

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def clamp_(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp normalized images in place to the valid pixel range [0, 1]."""
        return torch.maximum(torch.minimum(x, self.high, out=x), self.low, out=x)


def _noise(generators: list[torch.Generator], shape: tuple[int, ...],
           device: torch.device) -> torch.Tensor:
    """Standard normal noise of `shape` per image, each from its own item's generator (on
    the CPU, so that a seed gives the same start on every device)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


class Parametrization:
    """A batch of N images of size×size, as a function of one leaf tensor, `tensor`.

    One generator per image draws its start, so that an image does not depend on the others.
    """

    tensor: torch.Tensor

    def image(self) -> torch.Tensor:
        """The N×3×size×size normalized images (differentiable with respect to `tensor`)."""
        raise NotImplementedError

    @torch.no_grad()
    def assign(self, x: torch.Tensor, rows: list[int] | None = None) -> None:
        """Set `tensor` so that `image()` is `x` (clamped to the valid range), for the
        images `rows` only if given (then `x` holds just those)."""
        raise NotImplementedError

    @torch.no_grad()
    def project(self) -> None:
        """After an optimizer step: bring the images back into the valid range (a
        parametrization whose every value is a valid image does nothing)."""


class PixelImage(Parametrization):
    """The normalized pixels themselves (Simonyan et al. 2014), clamped to the valid range
    after every step; starts as the mean colour plus Gaussian noise of `sd`."""

    def __init__(self, generators: list[torch.Generator], size: int, norm: Normalization,
                 sd: float = 0.1) -> None:
        self.norm = norm
        noise = _noise(generators, (3, size, size), norm.mean.device)
        self.tensor = norm.clamp_(noise * sd).requires_grad_(True)

    def image(self) -> torch.Tensor:
        return self.tensor

    @torch.no_grad()
    def assign(self, x: torch.Tensor, rows: list[int] | None = None) -> None:
        x = self.norm.clamp_(x.clone())
        if rows is None:
            self.tensor.copy_(x)
        else:
            self.tensor[rows] = x

    @torch.no_grad()
    def project(self) -> None:
        self.norm.clamp_(self.tensor)


class FourierImage(Parametrization):
    """Olah, Mordvintsev & Schubert 2017, "Feature Visualization".

    The image is sigmoid(C · irfft2(s ⊙ z) / 4): `z` the optimized real and imaginary parts
    of a spectrum, `s` = 1 / max(|f|, 1/size) scales each frequency so that a unit step
    changes every frequency's share of the image alike (the optimizer then sees the 1/f
    spectrum of natural images as flat), C decorrelates colour with ImageNet's colour
    covariance, and the sigmoid keeps every pixel in [0, 1]. Starts from z ~ N(0, sd²).
    """

    def __init__(self, generators: list[torch.Generator], size: int, norm: Normalization,
                 sd: float = 0.01, decay_power: float = 1.0) -> None:
        device = norm.mean.device
        self.norm = norm
        self.size = (size, size)
        fy = torch.fft.fftfreq(size, device=device)[:, None]
        fx = torch.fft.rfftfreq(size, device=device)[None, :]
        frequency = torch.sqrt(fx * fx + fy * fy).clamp(min=1.0 / size)
        self.scale = frequency.pow(-decay_power)[None, None, :, :, None]
        self.color = COLOR_SQRT.to(device)
        self.color_inverse = torch.linalg.inv(self.color)
        # Real and imaginary parts of each colour's spectrum: N×3×size×(size//2+1)×2.
        noise = _noise(generators, (3, size, size // 2 + 1, 2), device)
        self.tensor = (noise * sd).requires_grad_(True)

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.tensor * self.scale)
        t = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4
        rgb = torch.sigmoid(torch.einsum("ck,nkhw->nchw", self.color, t))
        return self.norm.normalize(rgb)

    @torch.no_grad()
    def assign(self, x: torch.Tensor, rows: list[int] | None = None) -> None:
        rgb = self.norm.pixels(x).clamp(_EPS, 1 - _EPS)
        t = torch.einsum("ck,nkhw->nchw", self.color_inverse, torch.logit(rgb)) * 4
        spectrum = torch.view_as_real(torch.fft.rfft2(t, norm="ortho")) / self.scale
        if rows is None:
            self.tensor.copy_(spectrum)
        else:
            self.tensor[rows] = spectrum


PARAMETRIZATIONS: dict[str, type[Parametrization]] = {"pixel": PixelImage,
                                                      "fourier": FourierImage}
