"""The parent of the attention methods: a map read from a tokens×tokens relevance matrix.

Both methods build R = M_L ⋯ M_1 from the attention probabilities of the model's L blocks
(`worker.engine.attention`), one T×T matrix M_l per block, and read one row of R over the patch
tokens: the class token's, or, for a model whose head does not read a class token (a
global-pool ViT), the mean of the patch tokens' rows, which each output says in a warning.
Only that row is needed, so it is computed as a row vector times M_L, then M_{L-1}, ..., M_1:
L vector-matrix products per image instead of L matrix products.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import TargetError
from worker.engine.methods.base import BackwardRule, Computed, Maps, Method, Params
from worker.engine.tokens import TokenGrid, token_grid

if TYPE_CHECKING:
    from worker.engine.call import Call
    from worker.engine.passes import Pass

NO_CLASS_TOKEN = ("{name}: the model's head does not read a class token, so the map is the "
                  "mean of the patch tokens' rows of the relevance matrix, not a class token's "
                  "row")


def reads_class_token(model: nn.Module) -> bool:
    """Whether the model's head reads a class token (token 0): it declares a `cls_token` and
    does not pool its patch tokens instead (timm's `global_pool` other than "token",
    transformers' `use_mean_pooling`)."""
    if not any(name.rsplit(".", 1)[-1] == "cls_token" for name, _ in model.named_parameters()):
        return False
    for module in model.modules():
        pool = getattr(module, "global_pool", None)
        if isinstance(pool, str) and getattr(module, "cls_token", None) is not None:
            return pool == "token"
        if getattr(getattr(module, "config", None), "use_mean_pooling", False):
            return False
    return True


class TokenRelevance(Method):
    """A map that is one row of R = M_L ⋯ M_1 over the patch tokens, reshaped to the token
    grid (`worker.engine.tokens`) and upsampled bilinearly (align_corners=False) to the input:
    1×H×W. Computed from the call's one forward pass, which records the attention."""

    attention = True

    def rule(self, params: Params) -> BackwardRule | None:
        return None

    def blocks(self, done: Pass, rank: int) -> list[torch.Tensor] | None:
        """The pass's M_1, ..., M_L (rows×T×T, float32) for map `rank`; None if no row has it."""
        raise NotImplementedError

    def check(self, params: Params, call: Call, position: int) -> None:
        if call.target_layers:
            raise TargetError(
                f"target: {self.name} explains a class score through the class token's "
                "attention; it is not defined for a layer or neuron target: use gradcam or "
                "gradient for those")

    def compute(self, call: Call, params: Params, position: int) -> Maps:
        done = call.shared
        assert done is not None
        size = tuple(call.x.shape[-2:])
        tokens = token_grid(call.engine.model, size, done.attention[0].shape[-1])
        class_token = reads_class_token(call.engine.model) and tokens.prefix > 0
        reader = _reader(tokens, class_token, call.device).expand(len(call.x), -1)
        warnings = [] if class_token else [NO_CLASS_TOKEN.format(name=self.name)]
        maps: Maps = [{} for _ in call.selections]
        for rank in range(call.ranks):
            blocks = self.blocks(done, rank)
            if blocks is None:
                continue
            row = reader
            for matrix in reversed(blocks):
                row = torch.bmm(row.unsqueeze(1), matrix).squeeze(1)
            values = _upsample(row, tokens, size)
            for i, chosen in enumerate(call.selections):
                if rank < len(chosen):
                    maps[i][rank] = Computed(values[i], extras={"grid": tokens.grid},
                                             warnings=list(warnings))
        return maps


def _reader(tokens: TokenGrid, class_token: bool, device: torch.device) -> torch.Tensor:
    """The row vector that reads R: the class token's row, else the patch rows' mean."""
    reader = torch.zeros(tokens.tokens, device=device)
    if class_token:
        reader[0] = 1
    else:
        reader[tokens.prefix:] = 1 / (tokens.tokens - tokens.prefix)
    return reader


def _upsample(rows: torch.Tensor, tokens: TokenGrid, size: tuple[int, int]) -> torch.Tensor:
    """rows×T relevance over the tokens as rows×1×H×W maps of the input's size."""
    grid = rows[:, tokens.prefix:].reshape(len(rows), 1, *tokens.grid)
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)

