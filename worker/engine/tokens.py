"""Token sequences of vision transformers: how many prefix tokens, and the grid of the rest.

A transformer layer's output is N×(P + H·W)×C: P prefix tokens (class, distillation,
register tokens) then the H·W patch tokens in raster order. P and the grid come from the
model, never from a guess such as 14×14:

- P: timm's `num_prefix_tokens`; otherwise the token parameters the model declares
  (`cls_token`, `dist_token`, `distillation_token`, `reg_token`, `register_tokens`: a
  1×k×C parameter adds k), as in transformers' ViT, DeiT and BEiT embeddings;
- the grid: timm's `patch_embed.grid_size` (for the input size at hand when the patch
  embedding takes any size); transformers' config `image_size` and `patch_size`, i.e. the
  input's size over the patch size.

A sequence whose length is P + H·W, or H·W, for that grid is read with it. Models whose
grid changes per stage or per image (LeViT, MViTv2, PiT, Twins, PVTv2, CoaT, Swin in
transformers, ...) declare no single grid, or one that only fits their first stage: their
grid is inferred from the sequence length and the input, the grids an input of H×W has
being (⌊H/r⌋, ⌊W/r⌋) or (⌈H/r⌉, ⌈W/r⌉) for a stride r, after P, one (a class token of a
stage, as CoaT's) or no prefix tokens. A length that fits no grid, or fits several, is
refused with the reason. Hiera is refused by name: its tokens are not in raster
order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from shared.errors import UnsupportedModelError

Grid = tuple[int, int]
Box = tuple[int, int, int, int]

_TOKEN_PARAMETERS = ("cls_token", "dist_token", "distillation_token", "reg_token",
                     "register_tokens")
_UNORDERED = {"Hiera": "its tokens are not in raster order (it unrolls them into mask units)"}


@dataclass(frozen=True)
class TokenGrid:
    """A sequence of `prefix` tokens followed by the `grid` (H, W) of patch tokens, in
    raster order."""

    prefix: int
    grid: Grid

    @property
    def tokens(self) -> int:
        return self.prefix + self.grid[0] * self.grid[1]


def unordered_tokens(model: nn.Module) -> str | None:
    """Why the model's token sequences have no grid (a family refused by name), or None."""
    for module in model.modules():
        for family, reason in _UNORDERED.items():
            if type(module).__name__.startswith(family):
                return f"{family} is not supported: {reason}"
    return None


def declared_prefix(model: nn.Module) -> int:
    """The prefix tokens the model declares (see the module docstring); 0 if none."""
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    total, seen = 0, set()
    for name, parameter in model.named_parameters():
        if name.rsplit(".", 1)[-1] in _TOKEN_PARAMETERS and id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.shape[1] if parameter.dim() == 3 else 1
    return total


def _config(model: nn.Module):
    """The transformers config of a model (or of the transformers model inside a wrapper)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "patch_size"):
            return config
    return None


def _pair(value) -> Grid:
    if isinstance(value, Sequence):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def declared_grid(model: nn.Module, input_size: Grid) -> Grid | None:
    """The patch grid the model declares for an input of `input_size` (H, W), or None."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "grid_size", None) is not None:
        if getattr(embed, "dynamic_img_size", False) and hasattr(embed, "dynamic_feat_size"):
            return _pair(embed.dynamic_feat_size(input_size))
        return _pair(embed.grid_size)
    config = _config(model)
    if config is not None:
        patch = _pair(config.patch_size)
        return input_size[0] // patch[0], input_size[1] // patch[1]
    return None


def declared_patch(model: nn.Module) -> Grid | None:
    """The patch size (pixels per token, H and W) of the grid `declared_grid` gives, or None."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "patch_size", None) is not None:
        return _pair(embed.patch_size)
    config = _config(model)
    return None if config is None else _pair(config.patch_size)


def input_grids(input_size: Grid, cells: int) -> list[Grid]:
    """The grids of `cells` cells that an input of `input_size` has at some stride r: both
    sides divided by r and rounded down, or both rounded up."""
    height, width = input_size
    found: list[Grid] = []
    for stride in range(1, max(height, width) + 1):
        for grid in ((height // stride, width // stride),
                     (math.ceil(height / stride), math.ceil(width / stride))):
            if grid[0] * grid[1] == cells and grid[0] > 0 and grid not in found:
                found.append(grid)
    return found


def token_grid(model: nn.Module, input_size: Grid, tokens: int) -> TokenGrid:
    """How a sequence of `tokens` tokens of `model`, run on an input of `input_size` (H, W),
    splits into prefix tokens and a grid; an `UnsupportedModelError` saying why not."""
    refused = unordered_tokens(model)
    if refused is not None:
        raise UnsupportedModelError(refused)
    prefix = declared_prefix(model)
    grid = declared_grid(model, input_size)
    if grid is not None:
        for p in (prefix, 0):
            if tokens == p + grid[0] * grid[1]:
                return TokenGrid(p, grid)
    prefixes = sorted({prefix, 1, 0}, reverse=True)
    options = [TokenGrid(p, g) for p in prefixes if tokens > p
               for g in input_grids(input_size, tokens - p)]
    if len(options) == 1:
        return options[0]
    size = f"{input_size[0]}×{input_size[1]}"
    if not options:
        return _refuse(f"{tokens} tokens are not {' or '.join(map(str, prefixes))} prefix "
                       f"tokens and a grid of patches of the {size} input")
    listed = ", ".join(f"{o.prefix} + {o.grid[0]}×{o.grid[1]}" for o in options)
    return _refuse(f"{tokens} tokens fit several token grids of the {size} input ({listed})")


def _refuse(problem: str) -> TokenGrid:
    raise UnsupportedModelError(problem)


def patch_window(grid: Grid, input_size: Grid, position: Sequence[int],
                 stride: Grid | None = None) -> Box:
    """`(x0, y0, x1, y1)`: the input pixels of the grid cell (token patch) at `(y, x)`, end
    exclusive, clipped to the input. A cell is `stride` pixels (the patch size), by default
    the input divided evenly among the cells (the last row and column take the rest)."""
    (rows, cols), (height, width) = grid, input_size
    y, x = position
    step_y, step_x = stride or (math.ceil(height / rows), math.ceil(width / cols))
    return (min(x * step_x, width), min(y * step_y, height),
            min((x + 1) * step_x, width), min((y + 1) * step_y, height))
