"""Transformation robustness: the random jitter, scale and rotation applied to each image
before every forward pass, as one affine warp (Mordvintsev et al. 2015; Olah et al. 2017),
and the downscaling of DeepDream's octaves.

Each image's parameters come from its own generator on the CPU, so that a seed gives the
same transformations on every device and whatever else is in the batch. The warp samples
bilinearly with reflection at the borders; an integer jitter alone moves whole pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.spec.visualize import Regularizers


@dataclass(frozen=True)
class Affine:
    """Move the content by (dy, dx) pixels, scale it by `scale` and rotate it by `angle`
    degrees (counter-clockwise on screen) about the centre."""

    dy: float = 0.0
    dx: float = 0.0
    scale: float = 1.0
    angle: float = 0.0

    @property
    def identity(self) -> bool:
        return self == Affine()


def draw(generator: torch.Generator, reg: Regularizers) -> Affine:
    """Random parameters within the regularizers' ranges: integer jitter in [−j, j] pixels,
    scale uniform in [low, high], angle uniform in [−rotate, rotate]."""
    dy = dx = 0.0
    scale, angle = 1.0, 0.0
    if reg.jitter:
        dy, dx = (float(v) for v in torch.randint(-reg.jitter, reg.jitter + 1, (2,),
                                                  generator=generator))
    low, high = reg.scale
    if low != high:
        scale = low + (high - low) * float(torch.rand((), generator=generator))
    elif low != 1.0:
        scale = low
    if reg.rotate:
        angle = reg.rotate * (2 * float(torch.rand((), generator=generator)) - 1)
    return Affine(dy, dx, scale, angle)


def theta(affine: Affine, height: int, width: int) -> torch.Tensor:
    """The 2×3 matrix `F.affine_grid` takes: output coordinates to input ones, in [−1, 1]
    units (x first)."""
    a = math.radians(affine.angle)
    cos, sin = math.cos(a) / affine.scale, math.sin(a) / affine.scale
    # The content moves by t (normalized units), so the output at q reads the input at
    # M·(q − t), M undoing the scale and rotation (with y pointing down, this M turns the
    # content counter-clockwise on screen).
    tx, ty = 2 * affine.dx / width, 2 * affine.dy / height
    rotate = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    shift = -(rotate @ torch.tensor([tx, ty], dtype=torch.float64))
    return torch.cat([rotate, shift[:, None]], dim=1).float()


def warp(x: torch.Tensor, affines: list[Affine]) -> torch.Tensor:
    """Each image of N×C×H×W `x` under its own affine transformation (same size)."""
    if all(a.identity for a in affines):
        return x
    n, c, h, w = x.shape
    thetas = torch.stack([theta(a, h, w) for a in affines]).to(x.device, x.dtype)
    grid = F.affine_grid(thetas, [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to size×size (antialiased when shrinking), or `x` if already so."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)
