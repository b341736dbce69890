"""Reference inputs in the model's (normalized) input space, as the conventions name them.

- `black`: pixel value 0, then normalized: (0 - mean) / std per channel;
- `mean`: normalized 0, the normalization's mean colour;
- `blurred`: the image blurred by a Gaussian of σ = 5 % of its shorter side (reflected at the
  borders). Blurring is linear and the normalization affine per channel, so blurring the
  normalized image is normalizing the blurred picture;
- `uniform`: pixels drawn uniformly from [0, 1] by a seeded generator, then normalized.

An engine built without a normalization (`mean`/`std` None) treats its inputs as pixels:
black and the mean colour are then both 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.errors import InputError

BLUR_SIGMA_FRACTION = 0.05


@dataclass(frozen=True)
class Normalization:
    """The per-channel (x - mean) / std that turned pixels in [0, 1] into the model's input."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def of(cls, mean: Sequence[float] | None, std: Sequence[float] | None) -> Normalization:
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is None or std is None:
            return cls()
        if len(mean) != len(std) or not mean or any(s <= 0 for s in std):
            raise ValueError(f"mean {list(mean)} and std {list(std)} must be as long as each "
                             "other, with positive std")
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (…×C×H×W, in [0, 1]) in the model's input space."""
        if self.mean is None or self.std is None:
            return pixels
        channels = pixels.shape[-3]
        if channels != len(self.mean):
            raise InputError(f"images have {channels} channels and the normalization "
                             f"{len(self.mean)}")
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device)
        return (pixels - mean[:, None, None]) / std[:, None, None]

    def black(self, like: torch.Tensor) -> torch.Tensor:
        """Pixel value 0 (black), normalized, in the shape of `like`."""
        return self.normalize(torch.zeros_like(like))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """N×C×H×W images blurred by a separable Gaussian of `sigma` pixels, borders reflected."""
    if sigma <= 0:
        return x.clone()
    height, width = x.shape[-2:]
    radius = max(1, min(math.ceil(3 * sigma), height - 1, width - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def blurred(x: torch.Tensor) -> torch.Tensor:
    """The `blurred` baseline of N×C×H×W images: σ = 5 % of the shorter side."""
    return gaussian_blur(x, BLUR_SIGMA_FRACTION * min(x.shape[-2:]))


def uniform(shape: Sequence[int], generator: torch.Generator, norm: Normalization,
            device: torch.device) -> torch.Tensor:
    """The `uniform` baseline: pixels uniform in [0, 1] from `generator`, then normalized."""
    pixels = torch.rand(tuple(shape), generator=generator, device=device)
    return norm.normalize(pixels)


def value_range(x: torch.Tensor) -> torch.Tensor:
    """Each image's (max - min) over all its channels and pixels: the unit of noise levels."""
    flat = x.flatten(1)
    return flat.max(dim=1).values - flat.min(dim=1).values
