"""The cascading randomisation check: its curves on resnet18, its blocks, and its hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_testing import seeded_architecture
from PIL import Image
from torch import nn

from shared.examples import EXAMPLES
from shared.spec.model import Preprocessing
from worker.kinds.attribution.audit.sanity import (
    FAILS_AT,
    WEAK_AT,
    forward_order,
    parameterised_blocks,
    randomise,
    sanity_check,
    verdict,
)
from worker.models.build import preprocess_image

METHODS = ("gradient", "guided_backprop", "deconvnet")
RESNET_CASCADE = ["fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
                  "layer1.1", "layer1.0", "bn1", "conv1"]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return seeded_architecture("resnet18")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """The three example photos and a mirrored cat, at 64 px."""
    prep = Preprocessing(input_size=64, resize=64)
    pictures = [Image.open(e.path).convert("RGB") for e in EXAMPLES.values()]
    pictures.append(pictures[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return torch.stack([preprocess_image(p, prep) for p in pictures])


@pytest.fixture(scope="module")
def result(resnet18, photos):
    return sanity_check(resnet18, photos, METHODS, seed=0)


def test_resnet18_is_randomised_from_the_logits_down(result):
    assert list(result.blocks) == RESNET_CASCADE
    assert result.sample == 4
    for method in METHODS:
        assert len(result.spearman[method]) == len(result.ssim[method]) == len(RESNET_CASCADE)


def test_gradient_falls_and_guided_backprop_and_deconvnet_stay_high(result):
    rho = result.spearman
    for name in METHODS:
        print(name, np.round(rho[name], 2), np.round(result.ssim[name], 2))
    # Once the logits' block is random, the gradient changes; the modified-ReLU maps do not.
    assert rho["gradient"][0] < WEAK_AT
    assert rho["guided_backprop"][0] >= 0.95 and rho["deconvnet"][0] >= FAILS_AT
    # After every block: gradient's correlation clearly below guided backprop's.
    assert rho["gradient"][-1] <= rho["guided_backprop"][-1] - 0.1
    assert result.ssim["gradient"][-1] < result.ssim["guided_backprop"][-1]
    assert result.verdicts["gradient"].status == "passes"
    assert result.verdicts["guided_backprop"].status == "fails"
    assert result.verdicts["deconvnet"].status == "fails"
    assert "they show the image, not the model's decision" in result.verdicts["deconvnet"].text


def test_the_json_has_one_curve_per_method(result):
    data = result.to_json()
    assert data["blocks"] == RESNET_CASCADE and data["sample"] == 4
    assert [m["method"] for m in data["methods"]] == list(METHODS)
    assert {"spearman", "ssim", "verdict", "text"} <= set(data["methods"][0])


def test_the_caller_s_model_and_torch_s_random_state_are_untouched(photos):
    model = seeded_architecture("resnet18", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    sanity_check(model, photos[:1, :, :32, :32], ("gradient",), seed=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training  # seeded_architecture gave it in eval mode; still so
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_the_same_seed_gives_the_same_curves_and_another_seed_others():
    torch.manual_seed(0)
    model = Custom().eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    a = sanity_check(model, x, ("gradient",), seed=5)
    b = sanity_check(model, x, ("gradient",), seed=5)
    c = sanity_check(model, x, ("gradient",), seed=6)
    assert a.spearman == b.spearman and a.ssim == b.ssim
    assert a.spearman != c.spearman


class Custom(nn.Module):
    """A model with a nested container, a parameter-free block and a hand-made layer."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)  # defined first, called last
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.scale = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale(self.pool(self.stem(x)).flatten(1))
        return self.head(x)


class Scale(nn.Module):
    """A parameter without `reset_parameters`."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((4,), 3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def test_blocks_open_containers_skip_parameter_free_ones_and_follow_the_forward_pass():
    model = Custom().eval()
    blocks = parameterised_blocks(model)
    assert list(blocks) == ["head", "stem.0", "scale"]
    assert forward_order(model, blocks, torch.zeros(1, 3, 8, 8)) == ["stem.0", "scale", "head"]
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_randomise_changes_every_parameter_of_the_block_and_nothing_else():
    model = Custom()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    randomise(model.scale, seed=1)
    randomise(model.stem, seed=1)
    after = model.state_dict()
    assert not torch.equal(after["scale.weight"], before["scale.weight"])
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])
    assert torch.equal(after["head.weight"], before["head.weight"])
    again = Custom()
    again.load_state_dict(before)
    randomise(again.scale, seed=1)
    assert torch.equal(again.scale.weight, model.scale.weight)


@pytest.mark.parametrize(("top", "final", "status"), [
    (0.99, 0.7, "fails"), (0.7, 0.3, "weak"), (0.4, 0.5, "passes"), (None, 0.2, "undefined"),
])
def test_verdicts_read_the_first_step(top, final, status):
    assert verdict(top, final).status == status


def test_a_model_without_parameters_is_refused():
    with pytest.raises(ValueError, match="no parameterised block"):
        sanity_check(nn.Sequential(nn.Flatten()), torch.zeros(1, 3, 4, 4), ("gradient",))


def test_methods_keep_their_parameters_so_a_gated_rule_is_checked_on_a_gelu_model():
    import timm

    from shared.errors import UnsupportedModelError
    from shared.spec.methods import method_spec

    torch.manual_seed(0)
    model = timm.create_model("test_convnext", num_classes=4, ls_init_value=1.0).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with pytest.raises(UnsupportedModelError, match='"rule": "gated"'):
        sanity_check(model, x, ["guided_backprop"])
    gated = method_spec("guided_backprop", rule="gated")
    result = sanity_check(model, x, ["gradient", gated, method_spec("guided_backprop")])
    assert list(result.spearman) == ["gradient", "guided_backprop"]  # a name is checked once
    assert len(result.spearman["guided_backprop"]) == len(result.blocks) > 1
    assert all(v is not None for v in result.spearman["guided_backprop"])
    assert result.verdicts["guided_backprop"].status in ("passes", "weak", "fails")
