"""Attention rollout: the attention of every block, with the residual, multiplied through."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.methods.token_relevance import TokenRelevance

if TYPE_CHECKING:
    from worker.passes import Pass


class AttentionRollout(TokenRelevance):
    """Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers" (attention rollout).

    Per block, A = the mean over heads of the attention probabilities, Â = ½A + ½I with its
    rows renormalised to sum to 1; R = Â_L ⋯ Â_1, read at the class token's row (see
    `TokenRelevance`). Class-agnostic: every target of an image gets the same map. One
    forward-only pass; each block keeps only its head-averaged T×T matrix.
    """

    name = "attention_rollout"
    backward = False

    def keep(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.detach().float().mean(dim=1)

    def blocks(self, done: Pass, rank: int, last: bool) -> list[torch.Tensor]:
        eye = torch.eye(done.attention[0].shape[-1], device=done.attention[0].device)
        blocks = [0.5 * a + 0.5 * eye for a in done.attention]
        return [b / b.sum(dim=-1, keepdim=True) for b in blocks]
