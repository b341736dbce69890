"""Regularizers: penalties added to the loss, and operations on the images between steps.

All act on N×3×H×W images in the model's normalized space, image by image. The penalties
are Mahendran & Vedaldi's (2015) natural-image priors; the operations are Yosinski et al.'s
(2015, "Understanding Neural Networks Through Deep Visualization") four regularizers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shared.spec.visualize import Regularizers

# Keeps (Δ²)^(β/2) differentiable where the image is flat (β < 2 has an infinite slope at 0).
TV_EPS = 1e-8


def total_variation(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Per image, the mean over channels and pixels of ((x[i, j+1] − x[i, j])² +
    (x[i+1, j] − x[i, j])² + ε)^(β/2), on the grid where both differences exist."""
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    return (dy.square() + dx.square() + TV_EPS).pow(beta / 2).mean(dim=(1, 2, 3))


def alpha_norm(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per image, the mean of |x|^α: with a large α, a soft bound on the pixel values."""
    return x.abs().pow(alpha).mean(dim=(1, 2, 3))


def penalty(x: torch.Tensor, reg: Regularizers) -> torch.Tensor | None:
    """The weighted penalties per image, or None when there are none."""
    terms = []
    if reg.tv is not None and reg.tv.weight:
        terms.append(reg.tv.weight * total_variation(x, reg.tv.beta))
    if reg.alpha_norm is not None and reg.alpha_norm.weight:
        terms.append(reg.alpha_norm.weight * alpha_norm(x, reg.alpha_norm.alpha))
    return sum(terms) if terms else None


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel blurred by a Gaussian of `sigma` pixels, truncated at 3σ, borders
    mirrored (the edge pixel itself is not repeated)."""
    radius = min(max(1, math.ceil(3 * sigma)), x.shape[-1] - 1, x.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.device, x.dtype)
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def clip_below_percentile(x: torch.Tensor, score: torch.Tensor, percentile: float) -> None:
    """Set to zero (the mean colour), in place, the pixels whose N×H×W `score` is below
    the image's `percentile`."""
    q = torch.quantile(score.flatten(1), percentile / 100, dim=1).view(-1, 1, 1)
    x.mul_((score >= q).unsqueeze(1).to(x.dtype))


def apply_operations(x: torch.Tensor, grad: torch.Tensor | None, reg: Regularizers,
                     step: int) -> torch.Tensor:
    """Yosinski et al.'s operations after step number `step` (1-based), in their order:
    decay x ← (1 − l2)·x; every `blur.every` steps a Gaussian blur; pixels of small norm
    (‖x_ij‖ over channels) and of small contribution (|Σ_c x·∂objective/∂x|, the linear
    estimate of what setting the pixel to zero would change) set to zero. `grad` is the
    objective's gradient with respect to `x`, needed for the last."""
    if reg.l2:
        x = x * (1 - reg.l2)
    if reg.blur is not None and step % reg.blur.every == 0:
        x = gaussian_blur(x, reg.blur.sigma)
    if reg.clip_norm:
        x = x.clone()
        # (The square root of a sum over channels: `norm(dim=1)` is far slower on the CPU.)
        clip_below_percentile(x, x.square().sum(dim=1).sqrt(), reg.clip_norm)
    if reg.clip_contribution:
        if grad is None:
            raise ValueError("clip_contribution needs the objective's gradient")
        x = x.clone()
        clip_below_percentile(x, (x * grad).sum(dim=1).abs(), reg.clip_contribution)
    return x


def has_operations(reg: Regularizers, step: int) -> bool:
    """Whether `apply_operations` changes anything after step `step`."""
    blur = reg.blur is not None and step % reg.blur.every == 0
    return bool(reg.l2 or blur or reg.clip_norm or reg.clip_contribution)
