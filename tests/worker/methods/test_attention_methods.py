"""Attention rollout and attention Grad-CAM against a reference written here from the papers'
formulas: image by image, with each block's attention computed from its weights.

The reference never goes through the service's capture: it runs the blocks itself (timm's
`VisionTransformer` and transformers' `ViTForImageClassification`), softmax(q·kᵀ/√d), and
builds R with full T×T matrix products where the service multiplies one row through.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from captum_refs import relative_error
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

from shared.errors import TargetError
from shared.spec.targets import LayerTarget, TopKTarget
from worker.engine.core import Engine
from worker.engine.methods.token_relevance import NO_CLASS_TOKEN

SIDE, GRID, CLASSES, K = 64, (4, 4), 5, 3
METHODS = ("attention_rollout", "attention_gradcam")


class LogitsOf(nn.Module):
    """A transformers classifier as the service calls it: pixels in, `.logits` out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def sharpened(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` with seeded weights large enough for its attention to be far from uniform."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) * 2 / math.sqrt(fan_in))
            elif "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model.eval()


def timm_vit(name: str, **kwargs) -> nn.Module:
    return sharpened(timm.create_model(name, img_size=SIDE, num_classes=CLASSES, **kwargs))


def hf_vit() -> nn.Module:
    config = ViTConfig(image_size=SIDE, patch_size=16, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=CLASSES)
    return LogitsOf(sharpened(ViTForImageClassification(config)))


def _attend(q, k, v, probs):
    a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    probs.append(a)
    return (a @ v).transpose(1, 2).flatten(2)


def timm_forward(model, x1):
    """Logits of one image and each block's heads×T×T attention, from the blocks' weights."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(x1)))
    probs = []
    for block in model.blocks:
        attn = block.attn
        h = block.norm1(x)
        q, k, v = attn.qkv(h).unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4)
        x = x + attn.proj(_attend(q, k, v, probs))
        x = x + block.mlp(block.norm2(x))
    return model.forward_head(model.norm(x)), probs


def hf_forward(wrapper, x1):
    model = wrapper.model
    x = model.vit.embeddings(x1)
    probs = []
    for layer in model.vit.layers:
        attn = layer.attention
        h = layer.layernorm_before(x)
        q, k, v = (proj(h).unflatten(-1, (attn.num_attention_heads, -1)).transpose(1, 2)
                   for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        x = x + attn.o_proj(_attend(q, k, v, probs))
        x = x + layer.mlp(layer.layernorm_after(x))
    return model.classifier(model.vit.layernorm(x)[:, 0]), probs


def read(r, prefix, class_token):
    """The class token's row of R over the patches (else the patch rows' mean), 1×H×W."""
    row = r[0] if class_token else r[prefix:].mean(dim=0)
    grid = row[prefix:].reshape(1, 1, *GRID)
    return F.interpolate(grid, size=(SIDE, SIDE), mode="bilinear", align_corners=False)[0]


def rollout(probs, prefix, class_token):
    eye = torch.eye(probs[0].shape[-1])
    r = eye
    for a in probs:
        a_hat = 0.5 * a.mean(dim=0) + 0.5 * eye
        r = (a_hat / a_hat.sum(dim=-1, keepdim=True)) @ r
    return read(r, prefix, class_token)


def chefer(probs, grads, prefix, class_token):
    r = torch.eye(probs[0].shape[-1])
    for a, g in zip(probs, grads, strict=True):
        r = r + (g * a).clamp(min=0).mean(dim=0) @ r
    return read(r, prefix, class_token)


def reference(forward, model, x, prefix, class_token):
    """Per image: its top-K classes, and per rank the rollout and attention Grad-CAM maps."""
    out = []
    for x1 in x:
        logits, probs = forward(model, x1[None])
        classes = logits[0].topk(K).indices.tolist()
        ranks = []
        for c in classes:
            grads = [g[0] for g in torch.autograd.grad(logits[0, c], probs, retain_graph=True)]
            with torch.no_grad():
                ranks.append((rollout([a[0] for a in probs], prefix, class_token),
                              chefer([a[0] for a in probs], grads, prefix, class_token)))
        out.append((classes, ranks))
    return out


CASES = {
    # name: (model, reference forward, prefix tokens, whether the head reads a class token)
    "vit": (lambda: timm_vit("test_vit"), timm_forward, 1, True),
    "deit_distilled": (lambda: timm_vit("deit_tiny_distilled_patch16_224", depth=2),
                       timm_forward, 2, True),
    "global_pool": (lambda: timm_vit("test_vit", class_token=False, global_pool="avg"),
                    timm_forward, 0, False),
    "transformers_vit": (hf_vit, hf_forward, 1, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_methods_equal_the_reference_for_every_rank(case):
    build, forward, prefix, class_token = CASES[case]
    model = build()
    x = torch.randn(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    result = Engine(model).attribute(x, METHODS, TopKTarget(K))
    expected = reference(forward, model, x, prefix, class_token)
    for image, (classes, ranks) in zip(result.images, expected, strict=True):
        assert len(image.maps) == len(METHODS) * K
        for found in image.maps:
            assert found.target == {"class": classes[found.rank]}
            want = ranks[found.rank][found.position].numpy()
            assert found.values.shape == (1, SIDE, SIDE)
            assert relative_error(found.values, want) <= 1e-5
            assert found.values.std() > 1e-3 * np.abs(found.values).max()  # not a flat map
            warned = [NO_CLASS_TOKEN.format(name=found.method)]
            assert found.warnings == ([] if class_token else warned)


def one_patch_vit(target: tuple[int, int]) -> nn.Module:
    """A ViT whose every query attends to the patch token at `target` (y, x) of its grid.

    Patch pixels are ignored (zero patch embedding): each token is its position embedding,
    +10 on feature 0 for the target patch, -10 for the others, 0 for the class token. Every
    query is the same vector u (a bias) and every key β·LN(x)₀·u/|u|², so a score is
    β·LN(x)₀: large for the target patch only. MLPs are zero, so the blocks add the same
    vector to every token and the target stays the one key; the final norm is dropped and
    the head is linear in the class token, so the predicted class's logit is, up to the
    softmax's leak, the sum over blocks and heads of its gradient at the target's
    attention: one of those terms is positive whenever that logit is, and the head's rows
    come in opposite pairs (w, -w), so the predicted logit is positive.
    """
    torch.manual_seed(5)
    model = timm.create_model("test_vit", img_size=SIDE, num_classes=CLASSES)
    model.norm = nn.Identity()
    dim = model.embed_dim
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.patch_embed.proj.weight.zero_()
        model.patch_embed.proj.bias.zero_()
        model.cls_token.zero_()
        model.pos_embed.zero_()
        model.pos_embed[0, 1:, 0] = -10
        model.pos_embed[0, 1 + target[0] * GRID[1] + target[1], 0] = 10
        w = torch.randn(CLASSES, dim, generator=generator)
        model.head.weight.copy_(torch.where(torch.arange(CLASSES)[:, None] % 2 == 1,
                                            -w.roll(1, dims=0), w))
        model.head.bias.zero_()
        for block in model.blocks:
            qkv = block.attn.qkv
            qkv.weight.copy_(torch.randn(3 * dim, dim, generator=generator) / math.sqrt(dim))
            u = torch.randn(dim, generator=generator)
            qkv.weight[:dim] = 0
            qkv.bias[:dim] = u
            qkv.weight[dim:2 * dim] = 0
            qkv.weight[dim:2 * dim, 0] = 50 * u / u.pow(2).sum()
            qkv.bias[dim:2 * dim] = 0
            block.mlp.fc2.weight.zero_()
            block.mlp.fc2.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("target", [(1, 2), (3, 0)])
def test_maps_peak_on_the_one_patch_every_query_attends_to(target):
    model = one_patch_vit(target)
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert float(model(x).max(dim=1).values.min()) > 0  # see one_patch_vit
    result = Engine(model).attribute(x, METHODS)
    y0, x0 = target[0] * SIDE // GRID[0], target[1] * SIDE // GRID[1]
    for image in result.images:
        for found in image.maps:
            peak_y, peak_x = np.unravel_index(found.values[0].argmax(), (SIDE, SIDE))
            assert y0 <= peak_y < y0 + SIDE // GRID[0], found.method
            assert x0 <= peak_x < x0 + SIDE // GRID[1], found.method


def test_rollout_is_the_same_map_for_every_target():
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    result = Engine(timm_vit("test_vit")).attribute(x, ["attention_rollout"], TopKTarget(K))
    for image in result.images:
        for found in image.maps[1:]:
            np.testing.assert_array_equal(found.values, image.maps[0].values)


def test_rollout_alone_runs_forward_only_and_gives_the_same_maps():
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    engine = Engine(timm_vit("test_vit"))
    grads = []
    forward = engine.forward
    engine.forward = lambda *args, **kwargs: grads.append(kwargs["grad"]) or forward(*args,
                                                                                    **kwargs)
    alone = engine.attribute(x, ["attention_rollout"])
    together = engine.attribute(x, ["attention_gradcam", "attention_rollout"])
    assert grads == [False, True]
    for one, both in zip(alone.images, together.images, strict=True):
        assert relative_error(one.maps[0].values, both.maps[1].values) <= 1e-6


def test_maps_do_not_depend_on_the_micro_batches():
    model = timm_vit("test_vit")
    x = torch.randn(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(6))
    roomy = Engine(model).attribute(x, METHODS, TopKTarget(2))
    one_row = Engine(model).footprint(x[:1]).per_row(grad=True)
    results = 3 * len(x) * len(METHODS) * 2 * x[0].numel() * 4
    tight = Engine(model, memory_budget_mb=(results + 1.5 * one_row) / 2**20)
    rows = []
    forward = tight.forward
    tight.forward = lambda x, *args, **kwargs: rows.append(len(x)) or forward(x, *args, **kwargs)
    chunked = tight.attribute(x, METHODS, TopKTarget(2))
    assert rows == [1, 1, 1]
    for a, b in zip(roomy.images, chunked.images, strict=True):
        for m, n in zip(a.maps, b.maps, strict=True):
            assert relative_error(n.values, m.values) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_a_layer_target_is_refused(method):
    x = torch.randn(1, 3, SIDE, SIDE)
    with pytest.raises(TargetError, match="not defined for a layer or neuron target"):
        Engine(timm_vit("test_vit")).attribute(x, [method], LayerTarget("blocks.1", 0))
