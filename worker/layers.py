"""The default Grad-CAM layer: the last convolutional block before the global pooling.

Found from the model's structure, by one forward pass of one image: among the modules in the
order they finish, the last whose output is a 4-D (N×C×h×w) tensor that is not a pooling
module's output. A container that returns its last child's output finishes after the child,
so the whole block is named rather than its last layer. What that gives per family:

- ResNet, ResNeXt, Wide ResNet: `layer4`;
- VGG: the last ReLU of `features` (e.g. `features.19` for vgg11), before the last max-pool;
- MobileNet-v2/v3, DenseNet, EfficientNet (torchvision): `features`;
- timm EfficientNet-Lite and MobileNets: `bn2` (the head convolution's BatchNorm + ReLU6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shared.errors import UnsupportedModelError


def _is_pooling(module: nn.Module) -> bool:
    return "Pool" in type(module).__name__


def last_conv_block(finished: list[tuple[str, nn.Module, Any]]) -> str:
    """The default Grad-CAM layer, given (name, module, output) in the order modules finished."""
    pooled: set[int] = set()
    found: str | None = None
    for name, module, output in finished:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            continue
        if _is_pooling(module) or id(output) in pooled:
            # A container returning a pooling module's output is no convolutional block either.
            pooled.add(id(output))
            continue
        found = name
    if found is None:
        raise UnsupportedModelError(
            "gradcam: found no module with a 4-D (N×C×H×W) output before the global pooling; "
            "name the layer with the method's `layer` parameter"
        )
    return found
