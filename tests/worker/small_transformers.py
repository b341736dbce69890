"""Small seeded models of the families whose layers are not all N×C×H×W, for 64 px inputs.

Each builds in well under a second with random weights (nothing downloaded) and keeps its
family's structure: timm's ViT (one class token), DeiT (a class and a distillation token),
Swin (channels-last stages), LeViT (a token grid per stage) and Hiera; transformers' ViT with
eager attention, wrapped so that its forward returns the logits.
"""

from __future__ import annotations

import torch
from torch import nn

SIDE = 64
CLASSES = 4

TIMM = {  # name: the arguments that make it small; grids at 64 px in the comments
    "vit_tiny_patch16_224": {"img_size": SIDE, "depth": 2},  # 1 + 4×4 tokens
    "deit_tiny_distilled_patch16_224": {"img_size": SIDE, "depth": 2},  # 2 + 4×4 tokens
    "swin_tiny_patch4_window7_224": {"img_size": SIDE, "window_size": 4, "embed_dim": 24,
                                     "depths": (1, 1, 2), "num_heads": (1, 2, 2)},  # 16, 8, 4
    "levit_128s": {"img_size": SIDE},  # 4×4, 2×2, 1×1 tokens
    "hiera_tiny_224": {"img_size": SIDE, "embed_dim": 16, "num_heads": 1,
                       "stages": (1, 1, 1, 1)},
    "test_convnext": {},
    "test_efficientnet": {},
    "mobilenetv3_small_050": {},
}


def timm_model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A small timm model with seeded random weights, in eval mode."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=CLASSES,
                             **{**TIMM.get(name, {}), **kwargs}).eval()


class Logits(nn.Module):
    """A transformers classifier whose forward returns `.logits`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def hf_vit(seed: int = 0) -> nn.Module:
    """transformers' ViTForImageClassification: patch 16 (1 + 4×4 tokens), two layers."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(image_size=SIDE, patch_size=16, hidden_size=48, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=96, num_labels=CLASSES,
                       attn_implementation="eager")
    return Logits(ViTForImageClassification(config)).eval()


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))
