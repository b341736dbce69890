"""A model's feature-map layers and its default Grad-CAM layer, read from one forward pass.

A `worker.layouts.LayoutTrace` of one image's forward pass lists every named module in the
order it returned, and which outputs are established N×C×H×W maps; `read_layers` reads it.
A layer whose output is not established as N×C×H×W (a channels-last map, transformer
tokens, an attention tensor) is never read as a feature map: `layer_shapes` leaves it out,
Grad-CAM refuses it.

**The default Grad-CAM layer.** In a classifier the path to the logits ends in a head: a
global pooling and what follows it, with no grid left (N×C, or N×C×1×1). Modules return in
order, so the last output that still has a grid (more than one cell) is the last one before
that pooling; a squeeze-and-excitation pooling inside a block is followed by the block's own
grid, so it never ends the search. The default is that last output when it is an N×C×H×W
map returned by a module that runs once, not a pooling module's output (the block, not the
pooling after it), and not an `Identity` or dropout passing its input on. If something that
returns after it still carries a grid in a layout not established as N×C×H×W, the model's
last spatial stage is not convolutional (ViT, Swin, LeViT: only the patch stem is), and there
is no default: the error lists the N×C×H×W layers one may name. Per family, at 224 px:

- ResNet, ResNeXt, Wide ResNet: `layer4`;
- VGG: the last ReLU of `features` (`features.19` for vgg11), before the last max-pool;
- torchvision MobileNet-v2/v3, DenseNet, EfficientNet: `features`;
- timm EfficientNet-Lite and MobileNet-v2 (the built-in model): `bn2` (the head
  convolution's BatchNorm and ReLU6);
- timm MobileNet-v3/v4 and GhostNet: `blocks` (their head convolution runs after the pooling);
- timm ConvNeXt, ConvNeXt-V2, PoolFormer, CAFormer: `stages`;
- ViT, Swin, LeViT: none (name a layer).

A last stage of 1×1 (resnet18's `layer4` at 32 px) has no grid, and the stage before it is
chosen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from shared.errors import UnsupportedModelError
from worker.layouts import Finished, LayoutTrace, is_pooling

_LISTED = 5  # layers an error lists
_PASS_ON = (nn.Identity, nn.modules.dropout._DropoutNd)


@dataclass(frozen=True)
class ModelLayers:
    """What one forward pass tells of a model's layers.

    `shapes`: (C, H, W) of each module that runs once and returns an established N×C×H×W
    map, in the order they return. `other`: the output shape of each module whose 4-D output
    is not established as N×C×H×W. `default`: the default Grad-CAM layer, or None and why
    not (`problem`).
    """

    shapes: dict[str, tuple[int, int, int]]
    other: dict[str, tuple[int, ...]]
    default: str | None = None
    problem: str | None = None

    def default_layer(self, field: str) -> str:
        """The default layer; an `UnsupportedModelError` naming `field` if there is none."""
        if self.default is None:
            raise UnsupportedModelError(f"{field}: {self.problem}")
        return self.default

    def layout_problem(self, layer: str) -> str | None:
        """Why a named layer cannot be read as N×C×H×W, if its output is 4-D but not
        established as such (None otherwise)."""
        if layer not in self.other:
            return None
        return (f"module {layer!r} outputs shape {list(self.other[layer])}, which is not "
                "established as an N×C×H×W feature map (a channels-last map or transformer "
                f"tokens are not read as one); {self.hint()}")

    def hint(self) -> str:
        """The N×C×H×W layers with a grid, the last first, for an error message."""
        names = [repr(n) for n in reversed(self.shapes) if self.shapes[n][1:] != (1, 1)]
        if not names:
            return "the model has no layer with an N×C×H×W output of more than one cell"
        more = ", ..." if len(names) > _LISTED else ""
        return f"layers with an N×C×H×W output, the last first: {', '.join(names[:_LISTED])}{more}"


def _has_grid(tensor: torch.Tensor, nchw: bool) -> bool:
    """More than one cell: h·w > 1 for N×C×H×W; otherwise two dimensions besides the batch
    longer than one (tokens × channels, H × W × C, heads × tokens × dim)."""
    if nchw:
        return tensor.shape[2] * tensor.shape[3] > 1
    return tensor.dim() >= 3 and sum(size > 1 for size in tensor.shape[1:]) >= 2


def read_layers(trace: LayoutTrace) -> ModelLayers:
    """The feature-map layers and the default Grad-CAM layer of a traced forward pass."""
    calls = trace.calls
    runs = Counter(call.name for call in calls)
    pooled: set[int] = set()  # ids of pooling outputs (alive: `calls` holds them)
    shapes: dict[str, tuple[int, int, int]] = {}
    other: dict[str, tuple[int, ...]] = {}
    candidate: tuple[int, Finished] | None = None  # (position in `calls`, call)
    last_other: tuple[int, Finished] | None = None  # the last grid of another layout
    for i, call in enumerate(calls):
        out = call.output
        if not isinstance(out, torch.Tensor):
            continue
        if trace.is_nchw(out):
            if runs[call.name] == 1:
                shapes.setdefault(call.name, tuple(out.shape[1:]))
            if is_pooling(call.module) or id(out) in pooled:
                pooled.add(id(out))
            elif (runs[call.name] == 1 and _has_grid(out, True)
                  and not isinstance(call.module, _PASS_ON)):
                candidate = (i, call)
            continue
        if out.dim() == 4:
            other.setdefault(call.name, tuple(out.shape))
        if _has_grid(out, False):
            last_other = (i, call)
    found = ModelLayers(shapes, other)
    if candidate is None:
        return ModelLayers(shapes, other, problem=(
            "found no module with an N×C×H×W output of more than one cell before the global "
            "pooling; name the layer with the method's `layer` parameter"))
    if last_other is not None and last_other[0] > candidate[0]:
        after = last_other[1]
        return ModelLayers(shapes, other, problem=(
            f"no default layer: after the last N×C×H×W map, {candidate[1].name!r}, the module "
            f"{after.name!r} still carries the image's grid in a layout not established as "
            f"N×C×H×W (output {list(after.output.shape)}: transformer tokens or a channels-last "
            "map), so the model's last spatial stage is not convolutional; name the layer with "
            f"the method's `layer` parameter ({found.hint()})"))
    return ModelLayers(shapes, other, candidate[1].name)
