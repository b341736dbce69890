"""Independent references for the feature-map tests (test-only code, no feature_maps import).

- `brute_force_top`: every image's layer output with a plain forward hook, the maximum and
  its first row-major position by numpy, ranked by Python's `sorted`.
- `support_box`: the receptive field as the support of the plain input gradient of one unit
  on a copy of the model made positive: convolutions and linear layers averaging with equal
  weights, BatchNorm the identity, max-pooling replaced by average pooling over the same
  window (max-pooling's gradient reaches only the arg-max). With a positive input every
  activation is positive, so no ReLU closes and no sum cancels: the gradient is non-zero
  exactly where the unit's output depends on the input.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def layer_outputs(model: nn.Module, batches: Sequence[torch.Tensor], layer: str) -> np.ndarray:
    """`layer`'s N×C×H×W output for the images of all `batches`, one forward pass each."""
    frozen = copy.deepcopy(model).eval()
    outputs: list[torch.Tensor] = []
    module = dict(frozen.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: outputs.append(out.clone()))
    try:
        with torch.no_grad():
            for x in batches:
                frozen(x)
    finally:
        handle.remove()
    return torch.cat(outputs).numpy()


def brute_force_top(outputs: np.ndarray, items: Sequence[int], channels: Sequence[int], k: int
                    ) -> dict[int, list[tuple[int, float, tuple[int, int]]]]:
    """Per channel, the k (item, activation, (y, x)) with the highest maximum, ties to the
    lower item; an image's position is the first maximum in row-major order."""
    width = outputs.shape[3]
    top = {}
    for c in channels:
        entries = []
        for row, item in enumerate(items):
            flat = outputs[row, c].ravel()
            where = int(np.argmax(flat))  # numpy: the first occurrence of the maximum
            entries.append((item, float(flat[where]), (where // width, where % width)))
        top[c] = sorted(entries, key=lambda e: (-e[1], e[0]))[:k]
    return top


def positive_copy(model: nn.Module) -> nn.Module:
    """The positive float64 copy described in the module docstring."""
    positive = copy.deepcopy(model).double().eval()
    for parent in list(positive.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                   child.padding, child.ceil_mode))
    with torch.no_grad():
        for module in positive.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    return positive


def support_boxes(positive: nn.Module, layer: str, positions: Sequence[tuple[int, int]],
                  size: int) -> list[tuple[int, int, int, int]]:
    """Per position, (x0, y0, x1, y1) of the input gradient's support for the unit there
    (the sum over channels: every channel of a position shares its receptive field)."""
    captured: list[torch.Tensor] = []
    module = dict(positive.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: captured.append(out))
    x = torch.ones(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    try:
        positive(x)
    finally:
        handle.remove()
    boxes = []
    for y, x_ in positions:
        (grad,) = torch.autograd.grad(captured[0][0, :, y, x_].sum(), x, retain_graph=True)
        rows, cols = np.nonzero(grad[0].abs().sum(0).numpy())
        boxes.append((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1))
    return boxes
