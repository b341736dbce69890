"""Independent references the engine's maps are checked against (test-only code).

Nothing here imports the engine's override: the references reach the same maps by other
means, so a shared bug cannot hide on both sides.

- `captum_maps`: Captum 0.9 (module backward hooks on `nn.ReLU`); right only for models whose
  ReLUs are distinct `nn.ReLU` modules.
- `reference_maps`: plain autograd for `gradient`; for `guided_backprop` and `deconvnet`, the
  model runs with `F.relu`, `torch.relu`, `Tensor.relu(_)`, `F.hardtanh` and `F.relu6`
  temporarily replaced (`unittest.mock.patch.object`) by a custom autograd function written
  here. `nn.ReLU` and `nn.ReLU6` call `F.relu` / `F.hardtanh`, so modules and functional
  calls are caught alike; the patch counts its calls, so a test can check that the reference
  itself saw every rectifier. Patching is global, so these references must not run while
  another thread runs a model (pytest runs tests one at a time).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The one warning Captum's GuidedBackprop/Deconvolution always emit; ignored only here.
CAPTUM_HOOK_WARNING = "Setting backward hooks on ReLU activations"


def captum_maps(method: str, model: nn.Module, x: torch.Tensor, target: Sequence[int]
                ) -> np.ndarray:
    """Captum's N×C×H×W attribution for our method name (`Saliency` with abs=False)."""
    from captum.attr import Deconvolution, GuidedBackprop, Saliency

    classes = {"gradient": Saliency, "guided_backprop": GuidedBackprop,
               "deconvnet": Deconvolution}
    kwargs = {"abs": False} if method == "gradient" else {}
    inputs = x.detach().clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CAPTUM_HOOK_WARNING, category=UserWarning)
        out = classes[method](model).attribute(inputs, target=list(target), **kwargs)
    return out.detach().numpy()


class _RefRectifier(torch.autograd.Function):
    """ReLU or ReLU6 forward; the guided backprop or DeconvNet rule written out in backward."""

    @staticmethod
    def forward(ctx, x, upper, method):
        linear = x > 0 if upper is None else (x > 0) & (x < upper)
        ctx.save_for_backward(linear)
        ctx.method = method
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        (linear,) = ctx.saved_tensors
        positive = torch.where(grad > 0, grad, torch.zeros_like(grad))
        if ctx.method == "deconvnet":
            return positive, None, None
        return torch.where(linear, positive, torch.zeros_like(grad)), None, None


@dataclass
class PatchedCalls:
    count: int = 0


@contextmanager
def reference_rectifiers(method: str) -> Iterator[PatchedCalls]:
    """Within the block every ReLU/ReLU6 call applies `method`'s rule via `_RefRectifier`."""
    calls = PatchedCalls()
    originals = {"hardtanh": F.hardtanh}

    def rectify(x, upper):
        calls.count += 1
        return _RefRectifier.apply(x, upper, method)

    def relu(input, inplace=False):
        return rectify(input, None)

    def relu_(input):
        # Keep in-place semantics for callers that ignore the result (`x.relu_()`).
        return input.copy_(rectify(input, None))

    def relu6(input, inplace=False):
        return rectify(input, 6.0)

    def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
        if (float(min_val), float(max_val)) == (0.0, 6.0):
            return rectify(input, 6.0)
        return originals["hardtanh"](input, min_val, max_val, inplace)

    patches = [
        (F, "relu", relu), (F, "relu_", relu_), (F, "relu6", relu6), (F, "hardtanh", hardtanh),
        (torch, "relu", relu), (torch, "relu_", relu_),
        (torch.Tensor, "relu", relu), (torch.Tensor, "relu_", relu_),
    ]
    with ExitStack() as stack:
        for owner, name, replacement in patches:
            stack.enter_context(mock.patch.object(owner, name, replacement))
        yield calls


def frozen_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def class_gradient(model: nn.Module, x: torch.Tensor, target: Sequence[int]) -> torch.Tensor:
    """d logit[i, target[i]] / d x[i] for every image, with plain autograd."""
    inputs = x.detach().clone().requires_grad_(True)
    logits = model(inputs)
    score = logits[torch.arange(len(target)), torch.as_tensor(list(target))].sum()
    (grad,) = torch.autograd.grad(score, inputs)
    return grad


def reference_maps(method: str, model: nn.Module, x: torch.Tensor, target: Sequence[int]
                   ) -> tuple[np.ndarray, int]:
    """Our method's N×C×H×W maps by the independent route, and how many rectifiers it saw."""
    model = frozen_copy(model)
    if method == "gradient":
        return class_gradient(model, x, target).numpy(), 0
    with reference_rectifiers(method) as calls:
        grad = class_gradient(model, x, target)
    return grad.numpy(), calls.count


def layer_gradient(model: nn.Module, x: torch.Tensor, layer: str, channel: int,
                   position: tuple[int, ...] | None = None, method: str = "gradient"
                   ) -> np.ndarray:
    """`method`'s map of the sum of one channel (or one neuron) of a named module's output.

    The pseudo-loss is taken inside a forward hook, before any later in-place op (ReLU with
    inplace=True) can change the module's output.
    """
    model = frozen_copy(model)
    losses: list[torch.Tensor] = []

    def hook(module, args, output):
        picked = output[:, channel]
        losses.append(picked[(slice(None), *position)].sum() if position else picked.sum())

    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    inputs = x.detach().clone().requires_grad_(True)
    with ExitStack() as stack:
        stack.callback(handle.remove)
        if method != "gradient":
            stack.enter_context(reference_rectifiers(method))
        model(inputs)
        (grad,) = torch.autograd.grad(losses[0], inputs)
    return grad.numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
