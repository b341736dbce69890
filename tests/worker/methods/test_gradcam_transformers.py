"""Grad-CAM on transformers against pytorch-grad-cam, with the layer and reshape transform
it documents for ViT and Swin (written here for each model's own grid and prefix tokens)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from small_transformers import SIDE, hf_vit, images, timm_model

from shared.spec.targets import ClassTarget
from worker.engine.core import Engine

CLASSES = [1, 3]


class GridGradCAM(GradCAM):
    """pytorch-grad-cam's Grad-CAM left at the layer's grid: its maps are min-max scaled
    there, and its resize to the grid's own size changes nothing."""

    def __init__(self, model, target_layers, reshape_transform, grid):
        super().__init__(model, target_layers, reshape_transform=reshape_transform)
        self.grid = grid

    def get_target_width_height(self, input_tensor):
        return self.grid[1], self.grid[0]


def tokens_to_grid(prefix: int, grid: tuple[int, int]):
    """pytorch-grad-cam's documented ViT `reshape_transform`, with the model's own prefix
    tokens and grid (the documented one drops one token and assumes 14×14)."""
    def reshape_transform(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), *grid, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)
    return reshape_transform


def channels_last_to_grid(tensor):
    """Swin's blocks output N×H×W×C in timm 1.0 (the documented Swin transform reshapes
    tokens and raises on them)."""
    return tensor.permute(0, 3, 1, 2)


def minmax(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low = flat.min(axis=1, keepdims=True)
    return ((flat - low) / (flat.max(axis=1, keepdims=True) - low + 1e-7)).reshape(maps.shape)


CASES = {  # model: (build, the documented layer, reshape transform, grid)
    "vit": (lambda: timm_model("vit_tiny_patch16_224"), lambda m: m.blocks[-1].norm1,
            tokens_to_grid(1, (4, 4)), (4, 4)),
    "deit_distilled": (lambda: timm_model("deit_tiny_distilled_patch16_224"),
                       lambda m: m.blocks[-1].norm1, tokens_to_grid(2, (4, 4)), (4, 4)),
    "swin": (lambda: timm_model("swin_tiny_patch4_window7_224"),
             lambda m: m.layers[-1].blocks[-1].norm1, channels_last_to_grid, (4, 4)),
    "transformers_vit": (hf_vit, lambda m: m.model.vit.layers[-1].layernorm_before,
                         tokens_to_grid(1, (4, 4)), (4, 4)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_default_layer_equals_pytorch_grad_cam(case):
    build, documented, reshape_transform, grid = CASES[case]
    model = build()
    x = images(len(CLASSES), seed=5)
    engine = Engine(model)
    result = engine.attribute(x, ["gradcam"], [ClassTarget(c) for c in CLASSES])
    ours = np.stack([image.maps[0].values for image in result.images])  # N×1×64×64
    assert dict(model.named_modules())[engine.default_layer(x[:1])] is documented(model)

    cam = GridGradCAM(model, [documented(model)], reshape_transform, grid)
    theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in CLASSES])
    assert theirs.shape == (len(CLASSES), *grid)
    # Upsampled as the engine upsamples; both min-max scaled: the same scaling.
    theirs = F.interpolate(torch.from_numpy(theirs)[:, None], size=(SIDE, SIDE),
                           mode="bilinear", align_corners=False).numpy()
    for i in range(len(CLASSES)):
        a, b = minmax(ours[i:i + 1]).ravel(), minmax(theirs[i:i + 1]).ravel()
        assert np.linalg.norm(b) > 0
        cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        assert cosine >= 0.999, (case, i, cosine)
