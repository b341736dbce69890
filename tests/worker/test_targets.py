"""Targets: classes, top-k, layer channels and neurons, per-image targets, and bad targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_refs import layer_gradient, reference_maps
from engine_testing import METHODS, seeded_architecture
from small_transformers import images, timm_model
from torch import nn

from shared.errors import TargetError
from shared.spec.targets import PREDICTED, ClassTarget, LayerTarget, TopKTarget
from worker.engine.core import Engine

TOL = {"rtol": 1e-4, "atol": 1e-6}


def _maps(result, i):
    return [(m.method, m.target) for m in result.images[i].maps]


def test_class_target_is_the_gradient_of_that_logit(tiny_cnn, tiny_images):
    result = Engine(tiny_cnn).attribute(tiny_images, methods=METHODS, targets=ClassTarget(2))
    for m, method in enumerate(METHODS):
        expected, _ = reference_maps(method, tiny_cnn, tiny_images, [2, 2, 2])
        got = np.stack([image.maps[m].values for image in result.images])
        np.testing.assert_allclose(got, expected, **TOL, err_msg=method)
        assert all(image.maps[m].target == {"class": 2} for image in result.images)


def test_topk_gives_one_map_per_class_in_order_of_score(tiny_cnn, tiny_images):
    result = Engine(tiny_cnn).attribute(tiny_images, methods=("gradient", "deconvnet"),
                                        targets=TopKTarget(3))
    logits = tiny_cnn(tiny_images).detach()
    for i, image in enumerate(result.images):
        order = [int(c) for c in logits[i].argsort(descending=True)[:3]]
        assert _maps(result, i) == [(m, {"class": c}) for m in ("gradient", "deconvnet")
                                    for c in order]
        assert image.predicted_class == order[0]
        for k, c in enumerate(order):
            expected, _ = reference_maps("deconvnet", tiny_cnn, tiny_images[i:i + 1], [c])
            np.testing.assert_allclose(image.maps[3 + k].values, expected[0], **TOL)


def test_topk_maps_carry_their_rank_and_other_targets_none(tiny_cnn, tiny_images):
    engine = Engine(tiny_cnn)
    result = engine.attribute(tiny_images, methods=("gradient", "deconvnet"),
                              targets=[TopKTarget(3), PREDICTED, ClassTarget(1)])
    assert [m.rank for m in result.images[0].maps] == [0, 1, 2, 0, 1, 2]
    assert [m.rank for image in result.images[1:] for m in image.maps] == [None] * 4


def test_topk_larger_than_the_classes_gives_every_class(tiny_cnn, tiny_images):
    result = Engine(tiny_cnn).attribute(tiny_images[:1], targets=TopKTarget(10))
    assert sorted(m.target["class"] for m in result.images[0].maps) == [0, 1, 2, 3]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("position", [None, (5, 9)])
def test_layer_channel_is_the_gradient_of_its_activation_sum(tiny_cnn, tiny_images, method,
                                                              position):
    target = LayerTarget("conv2", 5, position)
    result = Engine(tiny_cnn).attribute(tiny_images, methods=(method,), targets=target)
    expected = layer_gradient(tiny_cnn, tiny_images, "conv2", 5, position, method=method)
    got = np.stack([image.maps[0].values for image in result.images])
    assert np.abs(got).max() > 0
    np.testing.assert_allclose(got, expected, **TOL)
    assert result.images[0].maps[0].target == target.to_json()
    if position is not None:  # a neuron only sees its receptive field
        rows, cols = np.nonzero(np.abs(got).sum(axis=(0, 1)))
        assert rows.max() - rows.min() < 12 and cols.max() - cols.min() < 12


def test_layer_followed_by_an_in_place_relu_is_taken_before_it():
    """ResNet's `bn1` output is rectified in place right after: the target must not see that."""
    model = seeded_architecture("resnet18")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    result = Engine(model).attribute(x, targets=LayerTarget("bn1", 7))
    expected = layer_gradient(model, x, "bn1", 7)
    np.testing.assert_allclose(result.images[0].maps[0].values, expected[0], **TOL)


def test_per_image_targets_equal_single_image_results(tiny_cnn, tiny_images):
    targets = [ClassTarget(3), TopKTarget(2), LayerTarget("conv3", 1, (2, 3))]
    x = tiny_images
    batch = Engine(tiny_cnn).attribute(x, methods=METHODS, targets=targets)
    for i, target in enumerate(targets):
        single = Engine(tiny_cnn).attribute(x[i:i + 1], methods=METHODS, targets=target)
        assert _maps(batch, i) == _maps(single, 0)
        for a, b in zip(batch.images[i].maps, single.images[0].maps, strict=True):
            np.testing.assert_allclose(a.values, b.values, **TOL)
    assert [len(image.maps) for image in batch.images] == [3, 6, 3]


def test_predicted_is_the_default(tiny_cnn, tiny_images):
    explicit = Engine(tiny_cnn).attribute(tiny_images, targets=PREDICTED)
    for image in explicit.images:
        assert image.maps[0].target == {"class": image.predicted_class}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (ClassTarget(4), "target.class: 4 is out of range"),
        (LayerTarget("conv2", 16), "target.channel: 16 is out of range"),
        (LayerTarget("conv9", 0), "no module named 'conv9'"),
        (LayerTarget("conv2", 0, (16, 0)), "target.position"),
        (LayerTarget("conv2", 0, (1,)), "target.position"),
        # Negative indices must not wrap around to the last class / channel / row.
        (ClassTarget(-1), "target.class: -1 is out of range"),
        (LayerTarget("conv2", -1), "target.channel: -1 is out of range"),
        (LayerTarget("conv2", 0, (-1, 0)), "target.position"),
        (TopKTarget(0), "target.topk"),
        (TopKTarget(-2), "target.topk"),
    ],
)
def test_bad_targets_raise_target_error(tiny_cnn, tiny_images, target, message, no_mode_left):
    with pytest.raises(TargetError, match=message):
        Engine(tiny_cnn).attribute(tiny_images, methods=METHODS, targets=target)


class TwoOutputs(nn.Module):
    def forward(self, x):
        return x, x


def test_layer_that_outputs_a_tuple_is_refused(no_mode_left):
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 2, 3), TwoOutputs())
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(self.body(x)[0].mean((2, 3)))

    with pytest.raises(TargetError, match="does not output a single tensor"):
        Engine(Head()).attribute(torch.randn(1, 3, 8, 8), targets=LayerTarget("body.1", 0))


def test_layer_that_does_not_run_is_refused(no_mode_left):
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.spare = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(TargetError, match="did not run"):
        Engine(Unused()).attribute(torch.randn(1, 1, 2, 2), targets=LayerTarget("spare", 0))


# A layer target on tokens or a channels-last map: (model, layer, the channel's values on the
# grid, N×H×W, read from the hooked output by hand).
LAYOUT_CASES = {
    "deit_tiny_distilled_patch16_224": (
        "blocks.0.mlp.fc2", lambda out, c: out[:, 2:, c].reshape(-1, 4, 4)),
    "swin_tiny_patch4_window7_224": ("layers.0.blocks.0.norm1", lambda out, c: out[..., c]),
}


@pytest.mark.parametrize("name", list(LAYOUT_CASES))
def test_a_layer_target_reads_tokens_and_channels_last_on_their_grid(name):
    layer, channel_values = LAYOUT_CASES[name]
    model = timm_model(name)
    x = images(2, seed=4)
    targets = [LayerTarget(layer, 3), LayerTarget(layer, 5, (2, 1))]
    result = Engine(model).attribute(x, ["gradient"], targets)
    module = dict(model.named_modules())[layer]
    for i, target in enumerate(targets):
        image = x[i:i + 1].clone().requires_grad_(True)
        recorded = []
        handle = module.register_forward_hook(lambda m, a, out, into=recorded: into.append(out))
        try:
            model(image)
        finally:
            handle.remove()
        values = channel_values(recorded[0], target.channel)[0]
        score = values.sum() if target.position is None else values[target.position]
        (expected,) = torch.autograd.grad(score, image)
        np.testing.assert_allclose(result.images[i].maps[0].values, expected[0].numpy(),
                                   rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


def test_a_position_off_a_token_grid_is_refused():
    engine = Engine(timm_model("vit_tiny_patch16_224"))
    with pytest.raises(TargetError, match=r"target.position: \[4, 0\] does not fit layer "
                                          r"'blocks.0''s grid \[4, 4\]"):
        engine.attribute(images(1), targets=LayerTarget("blocks.0", 0, (4, 0)))
    with pytest.raises(TargetError, match="target.channel: 192 is out of range; layer "
                                          "'blocks.0' has 192 channels"):
        engine.attribute(images(1), targets=LayerTarget("blocks.0", 192))
