"""Captum 0.9 references for the engine's sampling, path, layer and occlusion methods.

Each function gives Captum's N×C×H×W (or N×1×H×W) attribution under our definitions: the
SmoothGrad noise patched in as the engine draws it (written out here from its documented
contract, not taken from the engine), Grad-CAM rectified and upsampled bilinearly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from unittest import mock

import numpy as np
import torch
from attribution_refs import CAPTUM_HOOK_WARNING
from torch import nn

from shared.seeds import item_seed, method_seed


def smoothgrad_noise(x: torch.Tensor, samples: int, position: int, item: int) -> torch.Tensor:
    """The documented noise of one image: the s-th `randn(C, H, W)` draw of a generator
    seeded with `method_seed(item seed, position)`, unit variance (samples×C×H×W)."""
    generator = torch.Generator().manual_seed(method_seed(item_seed(0, item), position))
    return torch.stack([torch.randn(x.shape[1:], generator=generator) for _ in range(samples)])


def noise_sigma(image: torch.Tensor, noise: float) -> torch.Tensor:
    """σ = noise · (max − min) of one image, a float32 scalar as the engine computes it. A σ
    rounded in float64 instead can differ by an ulp, and so every noisy input; ReLU gates and
    max-pool switches then amplify that beyond the bounds the maps are checked against."""
    return noise * (image.max() - image.min())


def captum_smoothgrad(model: nn.Module, x: torch.Tensor, target: Sequence[int], *,
                      samples: int, noise: float, base: str, variant: str, position: int
                      ) -> np.ndarray:
    """`NoiseTunnel` over `Saliency(abs=False)` or `GuidedBackprop`, one image at a time."""
    from captum.attr import GuidedBackprop, NoiseTunnel, Saliency

    nt_type = {"mean": "smoothgrad", "squared": "smoothgrad_sq", "vargrad": "vargrad"}[variant]
    method = Saliency(model) if base == "gradient" else GuidedBackprop(model)
    kwargs = {"abs": False} if base == "gradient" else {}
    maps = []
    for i in range(len(x)):
        image = x[i : i + 1]
        sigma = noise_sigma(image, noise)
        eps = sigma * smoothgrad_noise(image, samples, position, i)

        def add_noise(inputs, stdev, n, eps=eps, sigma=sigma):
            assert stdev == float(sigma) and n == samples
            return inputs.repeat_interleave(n, dim=0) + eps

        with mock.patch.object(NoiseTunnel, "_add_noise_to_input", staticmethod(add_noise)), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=CAPTUM_HOOK_WARNING, category=UserWarning)
            out = NoiseTunnel(method).attribute(image, nt_type=nt_type, nt_samples=samples,
                                                stdevs=float(sigma), target=target[i], **kwargs)
        maps.append(out.detach().numpy())
    return np.concatenate(maps)


def captum_integrated_gradients(model: nn.Module, x: torch.Tensor, target: Sequence[int],
                                baselines: torch.Tensor | float, steps: int, rule: str
                                ) -> tuple[np.ndarray, np.ndarray]:
    """`IntegratedGradients` maps and convergence deltas."""
    from captum.attr import IntegratedGradients

    maps, delta = IntegratedGradients(model).attribute(
        x, baselines=baselines, target=list(target), n_steps=steps, method=rule,
        return_convergence_delta=True)
    return maps.detach().numpy(), delta.detach().numpy()


def captum_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Sequence[int]
                   ) -> np.ndarray:
    """`LayerGradCam` (rectified) upsampled with `interpolate(..., "bilinear")`: N×1×H×W."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, layer).attribute(x, target=list(target), relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear").detach().numpy()


def captum_guided_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                          target: Sequence[int]) -> np.ndarray:
    """`GuidedGradCam` with bilinear upsampling."""
    from captum.attr import GuidedGradCam

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CAPTUM_HOOK_WARNING, category=UserWarning)
        inputs = x.detach().clone().requires_grad_(True)
        out = GuidedGradCam(model, layer).attribute(inputs, target=list(target),
                                                    interpolate_mode="bilinear")
    return out.detach().numpy()


def captum_occlusion(model: nn.Module, x: torch.Tensor, target: Sequence[int], patch: int,
                     stride: int, baselines: torch.Tensor | float) -> np.ndarray:
    """`Occlusion` with window (C, patch, patch) and strides (C, stride, stride)."""
    from captum.attr import Occlusion

    channels = x.shape[1]
    out = Occlusion(model).attribute(x, target=list(target), baselines=baselines,
                                     sliding_window_shapes=(channels, patch, patch),
                                     strides=(channels, stride, stride),
                                     perturbations_per_eval=64)
    return out.detach().numpy()


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖, the conventions' map tolerance."""
    norm = float(np.linalg.norm(b))
    assert norm > 0, "the reference map is all zero"
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / norm)
