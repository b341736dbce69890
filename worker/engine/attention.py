"""The attention probabilities of a forward pass, captured exactly.

A fused kernel (`F.scaled_dot_product_attention`) never materialises the probabilities, so
`explicit_attention` makes the engine's private model copy compute them: timm's attention
modules get `fused_attn = False` (timm's own explicit path, q·scale @ kᵀ, softmax, @ v: the
same arithmetic, equal logits to 1e-5 relative), transformers models eager attention.

`AttentionCapture` then records, within a pass, the output of every softmax over the last
axis of a 4-D tensor whose last two axes are equal: each self-attention's rows×heads×T×T
probabilities, in forward order, as the very tensors the model goes on with, so that the
gradient with respect to one is the target's gradient with respect to those probabilities.
Cross-attention (an attention-pooling head's few queries) is not square and is not recorded.
An attention the model still computes in a fused kernel is counted, and refused by
`global_attention` rather than left out. The mode is thread-local.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from shared.errors import UnsupportedModelError

aten = torch.ops.aten

# Calls that are a softmax (an exported program calls the aten ops), their dim the second
# argument; and calls of attention kernels that never materialise the probabilities.
_SOFTMAX = {torch.softmax, torch.Tensor.softmax, F.softmax, torch.special.softmax,
            aten.softmax.int, aten._softmax.default}
_FUSED = {F.scaled_dot_product_attention: "scaled_dot_product_attention",
          F.multi_head_attention_forward: "multi_head_attention_forward",
          aten.scaled_dot_product_attention.default: "scaled_dot_product_attention"}

#: What the methods refuse, and what to use instead.
NO_ATTENTION = ("the model has no self-attention over its tokens (no token-to-token softmax "
                "in its forward pass); attention methods need a vision transformer with global "
                "self-attention (ViT, DeiT, BEiT, EVA); use gradcam or gradient")


def explicit_attention(model: nn.Module) -> None:
    """Make every attention of `model` (the engine's private copy) compute its probabilities."""
    for module in model.modules():
        if isinstance(getattr(module, "fused_attn", None), bool):
            module.fused_attn = False
        config = getattr(module, "config", None)
        if (callable(getattr(module, "set_attn_implementation", None))
                and getattr(config, "_attn_implementation", "eager") != "eager"):
            module.set_attn_implementation("eager")


def head_mean(probs: torch.Tensor) -> torch.Tensor:
    """rows×heads×T×T probabilities averaged over the heads: rows×T×T, float32, detached."""
    return probs.detach().float().mean(dim=1)


class AttentionCapture(TorchFunctionMode):
    """Within the block, `probs` collects each self-attention's probabilities (see the module
    docstring), or what `keep` makes of them as they are recorded; `fused` names the
    attention kernels that hid theirs."""

    def __init__(self, keep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.keep = keep
        self.probs: list[torch.Tensor] = []
        self.fused: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _FUSED:
            self.fused.append(_FUSED[func])
        elif func in _SOFTMAX and _is_attention(out, args[1] if len(args) > 1
                                                else kwargs.get("dim")):
            self.probs.append(out if self.keep is None else self.keep(out))
        return out

    def global_attention(self, rows: int) -> list[torch.Tensor]:
        """The probabilities, checked to be global self-attention over one token sequence for
        each of the pass's `rows`; an `UnsupportedModelError` saying why not otherwise."""
        if self.fused:
            raise UnsupportedModelError(
                f"the model computes attention in a fused kernel ({self.fused[0]}) that hides "
                "its probabilities; the service turns it off in timm attention modules and "
                "transformers models, but not in this model (a program exported with "
                "torch.export keeps the kernel it was exported with: export it with explicit "
                "attention, e.g. fused_attn = False on timm's attention modules)")
        if not self.probs:
            raise UnsupportedModelError(NO_ATTENTION)
        batches = sorted({p.shape[0] for p in self.probs})
        if batches != [rows]:
            raise UnsupportedModelError(
                f"the model attends within windows ({batches[-1] // rows} attention rows per "
                "image, as Swin does), so no attention relates every token of the image to "
                "every other; attention methods need global self-attention; use gradcam")
        tokens = list(dict.fromkeys(p.shape[-1] for p in self.probs))
        if len(tokens) > 1:
            raise UnsupportedModelError(
                f"the model's attention blocks attend over different token counts {tokens} "
                "(a multi-stage transformer); attention methods need one token sequence "
                "through every block")
        return self.probs


def _is_attention(out: Any, dim: Any) -> bool:
    """Whether a softmax output is rows×heads×T×T probabilities over its last axis."""
    return (isinstance(out, torch.Tensor) and out.dim() == 4 and dim in (-1, 3)
            and out.shape[-1] == out.shape[-2])
