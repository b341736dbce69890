"""Token grids: the prefix tokens and patch grid a model declares, or that its sequence
lengths and the input imply; refusals that say why."""

from __future__ import annotations

import pytest
from small_transformers import SIDE, hf_vit, timm_model
from torch import nn

from shared.errors import UnsupportedModelError
from worker.engine.tokens import (
    TokenGrid,
    declared_grid,
    declared_patch,
    declared_prefix,
    input_grids,
    patch_window,
    token_grid,
)


@pytest.mark.parametrize(("build", "prefix"), [
    (lambda: timm_model("vit_tiny_patch16_224"), 1),
    (lambda: timm_model("deit_tiny_distilled_patch16_224"), 2),  # class and distillation
    (lambda: timm_model("vit_tiny_patch16_224", reg_tokens=4), 5),  # and 4 registers
    (lambda: timm_model("vit_tiny_patch16_224", class_token=False, global_pool="avg"), 0),
    (hf_vit, 1),  # transformers: its `cls_token` parameter
])
def test_the_prefix_and_grid_come_from_the_model(build, prefix):
    model = build()
    assert declared_prefix(model) == prefix
    assert declared_grid(model, (SIDE, SIDE)) == (4, 4)
    assert declared_patch(model) == (16, 16)
    assert token_grid(model, (SIDE, SIDE), prefix + 16) == TokenGrid(prefix, (4, 4))
    assert token_grid(model, (SIDE, SIDE), 16) == TokenGrid(0, (4, 4))  # patch tokens alone


def test_a_grid_is_never_assumed_fourteen_by_fourteen():
    model = timm_model("vit_tiny_patch16_224", img_size=(96, 48))
    assert token_grid(model, (96, 48), 1 + 18) == TokenGrid(1, (6, 3))
    with pytest.raises(UnsupportedModelError, match="197 tokens are not 1 or 0 prefix"):
        token_grid(model, (96, 48), 197)


def test_a_grid_per_stage_is_inferred_from_the_token_count_and_the_input():
    levit = timm_model("levit_128s")  # declares no grid: 4×4, then 2×2 tokens at 64 px
    assert declared_grid(levit, (SIDE, SIDE)) is None
    assert token_grid(levit, (SIDE, SIDE), 16) == TokenGrid(0, (4, 4))
    assert token_grid(levit, (SIDE, SIDE), 4) == TokenGrid(0, (2, 2))
    # A stage's class token (CoaT): one prefix token before a grid.
    assert token_grid(levit, (SIDE, SIDE), 5) == TokenGrid(1, (2, 2))
    # Non-square inputs: the grid keeps the input's proportions at one stride.
    assert token_grid(levit, (64, 32), 8) == TokenGrid(0, (4, 2))
    with pytest.raises(UnsupportedModelError, match="7 tokens are not 1 or 0 prefix tokens "
                                                    "and a grid of patches of the 64×64 input"):
        token_grid(levit, (SIDE, SIDE), 7)
    # 2 tokens of a 64×32 input: a 2×1 grid, or a class token and a 1×1 grid.
    with pytest.raises(UnsupportedModelError, match=r"fit several token grids .*\(1 \+ 1×1, "
                                                    r"0 \+ 2×1\)"):
        token_grid(levit, (64, 32), 2)


def test_hiera_is_refused_by_name():
    with pytest.raises(UnsupportedModelError, match="Hiera is not supported: its tokens are "
                                                    "not in raster order"):
        token_grid(timm_model("hiera_tiny_224"), (SIDE, SIDE), 16)


def test_the_grids_of_an_input():
    assert input_grids((64, 64), 16) == [(4, 4)]
    assert input_grids((224, 224), 16) == [(4, 4)]  # ⌈224 / 56⌉: LeViT's last stage
    assert input_grids((64, 32), 8) == [(4, 2)]
    assert input_grids((64, 64), 12) == []


def test_a_patch_window_is_the_tokens_patch():
    assert patch_window((4, 4), (64, 64), (1, 2)) == (32, 16, 48, 32)  # x0, y0, x1, y1
    # 4×4 patches of 14 px on a 64 px input: the last 8 px belong to no token.
    assert patch_window((4, 4), (64, 64), (3, 3), (14, 14)) == (42, 42, 56, 56)
    assert patch_window((3, 3), (64, 64), (2, 2)) == (44, 44, 64, 64)  # clipped


def test_a_model_without_tokens_declares_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert declared_prefix(model) == 0
    assert declared_grid(model, (SIDE, SIDE)) is None and declared_patch(model) is None
