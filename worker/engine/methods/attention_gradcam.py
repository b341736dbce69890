"""Attention Grad-CAM: the attention of every block weighted by the target's gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.methods.token_relevance import TokenRelevance

if TYPE_CHECKING:
    from worker.engine.passes import Pass


class AttentionGradCam(TokenRelevance):
    """Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability for Interpreting
    Bi-Modal and Encoder-Decoder Transformers" (ICCV), for self-attention, without LRP.

    R = I (tokens × tokens); per block in forward order, Ā = the mean over heads of
    (∇A ⊙ A)⁺, A the attention probabilities and ∇A the target score's gradient with respect
    to them, and R ← R + Ā·R; read at the class token's row (see `TokenRelevance`), i.e.
    R = (I + Ā_L) ⋯ (I + Ā_1). From the call's forward pass, with one backward pass per
    target rank to the attention probabilities.
    """

    name = "attention_gradcam"

    def blocks(self, done: Pass, rank: int) -> list[torch.Tensor] | None:
        grads = done.attention_grads(rank)
        if grads is None:
            return None
        eye = torch.eye(grads[0].shape[-1], device=grads[0].device)
        return [eye + (grad * probs.detach().float()).clamp(min=0).mean(dim=1)
                for probs, grad in zip(done.attention, grads, strict=True)]
