"""Grad-CAM and Guided Grad-CAM against Captum, their shapes, and the shared forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum_refs import captum_gradcam, captum_guided_gradcam, relative_error

from shared.errors import SpecError, TargetError
from shared.spec.methods import method_spec
from shared.spec.targets import ClassTarget, TopKTarget
from worker.engine.core import Engine

CLASSES = [1, 3]


def maps_of(result, position: int) -> np.ndarray:
    return np.stack([image.maps[position].values for image in result.images])


def layer_grid(model, module, x) -> tuple[int, int]:
    """The (h, w) of a module's output, by a forward hook."""
    seen = []
    handle = module.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[-2:])))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(("architecture", "side", "layer"), [
    ("resnet18", 64, None),  # layer4
    ("resnet18", 64, "layer3"),
    ("vgg11", 32, None),  # features.19
    ("vgg11", 32, "features.13"),
])
def test_equals_captum(architecture, side, layer, request):
    model = request.getfixturevalue(architecture)
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(3))
    methods = [method_spec("gradcam", layer=layer), method_spec("guided_gradcam", layer=layer)]
    engine = Engine(model)
    result = engine.attribute(x, methods, [ClassTarget(c) for c in CLASSES])
    module = dict(model.named_modules())[layer or engine.default_layer(x[:1])]
    cam = maps_of(result, 0)
    assert cam.shape == (2, 1, side, side)
    assert np.abs(cam).max() > 0
    assert relative_error(cam, captum_gradcam(model, module, x, CLASSES)) <= 1e-4
    # Each map names the layer grid it was upsampled from, which its picture smooths over.
    grid = layer_grid(model, module, x[:1])
    assert {image.maps[0].extras["grid"] for image in result.images} == {grid}
    guided = maps_of(result, 1)
    assert guided.shape == (2, 3, side, side)
    assert relative_error(guided, captum_guided_gradcam(model, module, x, CLASSES)) <= 1e-4
    assert result.coverage[0] is None and result.coverage[1].complete


def test_guided_gradcam_is_guided_backprop_times_gradcam_from_one_forward(tiny_cnn, tiny_images):
    forwards = []
    tiny_cnn.register_forward_pre_hook(lambda module, args: forwards.append(len(args[0])))
    engine = Engine(tiny_cnn)
    methods = ["guided_backprop", "gradcam", "guided_gradcam", "gradient"]
    engine.attribute(tiny_images, methods, TopKTarget(2))  # the estimate's probe, layer search
    forwards.clear()
    result = engine.attribute(tiny_images, methods, TopKTarget(2))
    assert forwards == [3]
    for image in result.images:
        assert [(m.method, m.position) for m in image.maps] == [
            (name, p) for p, name in enumerate(methods) for _ in range(2)]
        for rank in range(2):
            guided, cam, product = (image.maps[2 * p + rank].values for p in range(3))
            np.testing.assert_allclose(product, guided * cam, rtol=1e-6, atol=1e-9)
    # The guided backward pass ran once per rank for both methods.
    assert result.coverage[2].applied == result.coverage[0].applied == 2 * 4


def test_gradcam_maps_are_one_channel_and_non_negative(trained_cnn):
    from toy_patterns import TEST_SEED, make_dataset

    x, _ = make_dataset(4, TEST_SEED)
    result = Engine(trained_cnn).attribute(x, ["gradcam"])
    for image in result.images:
        assert image.maps[0].values.shape == (1, 32, 32)
        assert image.maps[0].values.min() >= 0 and image.maps[0].values.max() > 0


def test_layers_that_cannot_be_used_are_refused(tiny_cnn, tiny_images):
    engine = Engine(tiny_cnn)
    with pytest.raises(TargetError, match=r"methods\[1\].layer: no module named 'conv9'"):
        engine.attribute(tiny_images, ["gradient", method_spec("gradcam", layer="conv9")])
    with pytest.raises(SpecError, match="outputs shape \\[N, 32\\].*N×C×H×W"):
        engine.attribute(tiny_images, [method_spec("gradcam", layer="head")])


class _Exp(torch.nn.Module):
    def forward(self, x):
        return x.exp()


class _EvidenceAgainstClassZero(torch.nn.Module):
    """Positive activations (`act`) that lower class 0's score and raise class 1's: class 0's
    Grad-CAM, ReLU(Σ_c α_c A_c) with every α_c < 0, is zero everywhere; class 1's is not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.act = _Exp()

    def forward(self, x):
        pooled = self.act(self.conv(x)).mean(dim=(1, 2, 3))
        return torch.stack([-pooled, pooled], dim=1)


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam"])
def test_a_map_that_grad_cams_relu_clips_to_zero_says_so(method):
    torch.manual_seed(0)
    model = _EvidenceAgainstClassZero().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    result = Engine(model).attribute(x, [method_spec(method, layer="act")],
                                     TopKTarget(2))
    for image in result.images:
        for output in image.maps:
            zero = output.target["class"] == 0
            assert (np.abs(output.values).max() == 0) == zero
            assert [w for w in output.warnings if "zero everywhere" in w] == (
                [f"{method}: the map is zero everywhere: at layer 'act' the gradient-weighted "
                 "sum of the activations is negative or zero at every position, which "
                 "Grad-CAM's ReLU clips (the layer holds evidence against the target there); "
                 "try another layer"] if zero else [])
