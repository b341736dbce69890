"""Attention captured exactly: explicit attention in the engine's copy gives the fused model's
logits, the caller's model keeps its fused attention, and what is not global self-attention
is refused with the reason."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from captum_refs import relative_error
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

from shared.errors import UnsupportedModelError
from worker.engine.core import Engine
from worker.models.programs import load_program

METHODS = ("attention_rollout", "attention_gradcam")


class LogitsOf(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def hf_vit() -> LogitsOf:
    config = ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=5)
    return LogitsOf(ViTForImageClassification(config))


def fused(model: nn.Module) -> list[bool]:
    """Per attention module, whether it uses a fused kernel (timm) or sdpa (transformers)."""
    timm_flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    return timm_flags or [m.config._attn_implementation == "sdpa" for m in model.modules()
                          if isinstance(m, ViTForImageClassification)]


MODELS = {
    "vit": lambda: timm.create_model("vit_tiny_patch16_224", img_size=64, depth=3,
                                     num_classes=5),
    "deit_distilled": lambda: timm.create_model("deit_tiny_distilled_patch16_224",
                                                img_size=64, depth=3, num_classes=5),
    "global_pool": lambda: timm.create_model("test_vit", img_size=64, num_classes=5,
                                             class_token=False, global_pool="avg"),
    "transformers_vit": hf_vit,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_with_explicit_attention_equal_the_fused_models(name, no_mode_left):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert all(fused(model))  # the model as given runs the fused kernel
    with torch.no_grad():
        expected = model(x).numpy()
    engine = Engine(model)
    done = engine.forward(x, (), grad=True, override=False, attention=lambda p: p)
    blocks = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    assert len(done.attention) == len(blocks) > 0
    assert relative_error(done.logits.detach().numpy(), expected) <= 1e-5
    assert not any(fused(engine.model))
    assert all(fused(model))  # the caller's model is untouched


@pytest.mark.parametrize("method", METHODS)
def test_windowed_attention_is_refused(method, no_mode_left):
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=32, window_size=4,
                             depths=(1, 1), num_heads=(1, 2), embed_dim=16, num_classes=5)
    with pytest.raises(UnsupportedModelError, match="attends within windows .* Swin"):
        Engine(swin.eval()).attribute(torch.randn(2, 3, 32, 32), [method])


@pytest.mark.parametrize("method", METHODS)
def test_a_model_without_attention_is_refused(method, tiny_cnn, tiny_images, no_mode_left):
    with pytest.raises(UnsupportedModelError, match="has no self-attention over its tokens"):
        Engine(tiny_cnn).attribute(tiny_images, [method])


class FusedOnly(nn.Module):
    """Self-attention through the fused kernel with no switch to an explicit path."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)[:, None]
        tokens = F.scaled_dot_product_attention(tokens, tokens, tokens)
        return self.head(tokens.mean(dim=(1, 2)))


def test_attention_hidden_in_a_fused_kernel_is_refused(no_mode_left):
    with pytest.raises(UnsupportedModelError, match="fused kernel"):
        Engine(FusedOnly().eval()).attribute(torch.randn(2, 3, 32, 32), ["attention_gradcam"])


@pytest.mark.parametrize("fused_attn", [True, False])
def test_an_exported_program_keeps_the_attention_it_was_exported_with(fused_attn, tmp_path,
                                                                      no_mode_left):
    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=5).eval()
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused_attn
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}}),
                      tmp_path / "vit.pt2")
    program = load_program(tmp_path / "vit.pt2")
    if fused_attn:
        with pytest.raises(UnsupportedModelError, match="export it with explicit attention"):
            Engine(program).attribute(x, ["attention_rollout"])
        return
    found = Engine(program).attribute(x, METHODS)
    expected = Engine(model).attribute(x, METHODS)
    for ours, eager in zip(found.images, expected.images, strict=True):
        for a, b in zip(ours.maps, eager.maps, strict=True):
            assert relative_error(a.values, b.values) <= 1e-5
