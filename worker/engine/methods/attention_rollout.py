"""Attention rollout: the attention of every block, with the residual, multiplied through."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.methods.token_relevance import TokenRelevance

if TYPE_CHECKING:
    from worker.engine.passes import Pass


class AttentionRollout(TokenRelevance):
    """Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers" (attention rollout).

    Per block, A = the mean over heads of the attention probabilities, Â = ½A + ½I with its
    rows renormalised to sum to 1; R = Â_L ⋯ Â_1, read at the class token's row (see
    `TokenRelevance`). Class-agnostic: every target of an image gets the same map. No
    backward pass: alone, it runs forward only, and keeps each block's head mean.
    """

    name = "attention_rollout"
    backward = False

    def blocks(self, done: Pass, rank: int) -> list[torch.Tensor]:
        means = done.attention_means()
        eye = torch.eye(means[0].shape[-1], device=means[0].device)
        blocks = [0.5 * a + 0.5 * eye for a in means]
        return [b / b.sum(dim=-1, keepdim=True) for b in blocks]
