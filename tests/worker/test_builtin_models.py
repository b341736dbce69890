"""The built-in EfficientNet-Lite0: conversion from the PyPI package, ImageNet predictions on
the example photos, and the methods through its 33 ReLU6 applications, checked against an
independent reference and against Captum (whose GuidedBackprop misses ReLU6 silently)."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from shared.examples import EXAMPLES, get_example
from shared.spec.methods import method_spec
from shared.spec.model import parse_model_spec
from worker.engine.core import Engine
from worker.engine.input_dependence import NO_INPUT_DEPENDENCE
from worker.models.build import build_model, preprocess_image
from worker.models.builtin import BUILTIN_MODELS, EFFICIENTNET_LITE0_SPEC, imagenet_class_names
from worker.models.builtin import efficientnet_lite0 as lite0

METHODS = ("gradient", "guided_backprop", "deconvnet")
CATS = range(281, 286)  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat
RELU6_PER_IMAGE = 33


@pytest.fixture(scope="module")
def spec():
    return parse_model_spec(EFFICIENTNET_LITE0_SPEC)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return lite0.artifact(tmp_path_factory.mktemp("builtin"))


@pytest.fixture(scope="module")
def model(spec, artifact):
    return build_model(spec, artifact).eval()


def example_input(name: str, spec) -> torch.Tensor:
    with Image.open(get_example(name).path) as image:
        return preprocess_image(image, spec.preprocessing)[None]


@pytest.fixture(scope="module")
def chelsea(spec):
    return example_input("chelsea", spec)


@pytest.fixture(scope="module")
def result(model, chelsea):
    """All three methods on chelsea in one engine call (one forward, three backwards)."""
    return Engine(model).attribute(chelsea, METHODS)


@pytest.fixture(scope="module")
def maps(result):
    return {m.method: m.values for m in result.images[0].maps}


class ReferenceReLU6(torch.autograd.Function):
    """ReLU6 written from the rules in docs/models.md, independently of the engine.

    guided: g_in = 1[0 < x < 6] * max(g_out, 0); deconvnet: g_in = max(g_out, 0).
    """

    @staticmethod
    def forward(ctx, x, guided):
        ctx.save_for_backward(x)
        ctx.guided = guided
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad = grad.clamp(min=0)
        if ctx.guided:
            grad = grad * ((x > 0) & (x < 6)).to(grad.dtype)
        return grad, None


class ReferenceAct(nn.Module):
    def __init__(self, guided: bool) -> None:
        super().__init__()
        self.guided = guided

    def forward(self, x):
        return ReferenceReLU6.apply(x, self.guided)


def reference_map(model: nn.Module, x: torch.Tensor, target: int, guided: bool) -> np.ndarray:
    """The map of a deep copy whose every nn.ReLU6 (BatchNormAct2d's `.act`) is swapped."""
    ref = copy.deepcopy(model).eval()
    swapped = 0
    for parent in list(ref.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, ReferenceAct(guided))
                swapped += 1
    assert swapped == RELU6_PER_IMAGE
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ref(x)[0, target], x)
    return grad[0].numpy()


def assert_relative(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --- declaration and conversion -----------------------------------------------------------


def test_the_declaration_and_the_examples_import_without_torch():
    # The Celery parent imports BUILTIN_MODELS and the API serves the examples: neither may
    # pull in torch (nor scikit-image or PIL, for the examples).
    code = ("import sys, worker.models.builtin, shared.examples; "
            "bad = {'torch', 'timm', 'skimage', 'scipy'} & set(sys.modules); "
            "sys.exit(sorted(bad) or 0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_spec_is_a_valid_imagenet_model_spec(spec):
    from torchvision.models import ResNet18_Weights

    assert [m.spec["name"] for m in BUILTIN_MODELS] == ["efficientnet_lite0"]
    assert spec.architecture == "timm:efficientnet_lite0" and spec.num_classes == 1000
    assert (spec.preprocessing.resize, spec.preprocessing.input_size) == (256, 224)
    assert spec.class_names == imagenet_class_names()
    assert list(imagenet_class_names()) == ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def test_conversion_pairs_247_tensors_and_writes_the_same_bytes_each_time(artifact, tmp_path):
    source = lite0.load_source(lite0.package_weights())
    assert sum(not k.endswith("num_batches_tracked") for k in source) == lite0.NUM_TENSORS
    again = lite0.write_safetensors(lite0.package_weights(), tmp_path / "again.safetensors")
    assert again.read_bytes() == artifact.read_bytes()
    mtime = artifact.stat().st_mtime_ns
    assert lite0.artifact(artifact.parent) == artifact  # cached: converted once
    assert artifact.stat().st_mtime_ns == mtime


def test_conversion_refuses_a_tensor_of_the_wrong_shape():
    source = lite0.load_source(lite0.package_weights())
    name = "_blocks.5._project_conv.weight"
    out_channels, *rest = source[name].shape
    source[name] = torch.zeros(out_channels + 1, *rest)
    with pytest.raises(lite0.ConversionError) as info:
        lite0.convert(source)
    message = str(info.value)
    assert name in message and "blocks.3.0.conv_pwl.weight" in message
    assert f"[{out_channels + 1}, " in message and f"needs [{out_channels}, " in message


def test_conversion_refuses_tensors_out_of_order():
    source = lite0.load_source(lite0.package_weights())
    names = list(source)
    i, j = names.index("_bn0.running_mean"), names.index("_bn0.running_var")
    names[i], names[j] = names[j], names[i]  # same shapes: only the order betrays it
    with pytest.raises(lite0.ConversionError, match="_bn0.running_var cannot be bn1.running_mean"):
        lite0.convert({k: source[k] for k in names})


def test_conversion_refuses_a_missing_tensor():
    source = lite0.load_source(lite0.package_weights())
    del source["_fc.bias"]
    with pytest.raises(lite0.ConversionError, match="246 weight tensors and the architecture 247"):
        lite0.convert(source)


# --- predictions --------------------------------------------------------------------------


@pytest.mark.parametrize(("example", "classes"), [
    ("chelsea", set(CATS)),
    ("coffee", {967}),  # espresso
    ("rocket", {657, 744}),  # missile, projectile
])
def test_top1_on_the_example_photos(model, spec, example, classes):
    with torch.no_grad():
        probs = model(example_input(example, spec)).softmax(dim=1)[0]
    top1 = int(probs.argmax())
    assert top1 in classes, (spec.class_name(top1), float(probs[top1]))
    assert EXAMPLES[example].expected.split(" / ")[0] == spec.class_name(top1)


def test_examples_are_scikit_images_files():
    registry = pytest.importorskip("skimage.data._registry").registry
    for example in EXAMPLES.values():
        digest = hashlib.sha256(example.read_bytes()).hexdigest()
        assert digest == example.sha256 == registry[f"data/{example.filename}"]


# --- the three methods through ReLU6 --------------------------------------------------------


def test_every_relu6_application_is_overridden_for_every_method(model, result):
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == RELU6_PER_IMAGE
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    for position, method in enumerate(METHODS):
        coverage = result.coverage[position]
        assert coverage.relu_calls == coverage.overridden == RELU6_PER_IMAGE, method
        assert coverage.applied == RELU6_PER_IMAGE, method
    assert result.images[0].predicted_class in CATS


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_modified_relu6_methods_match_an_independent_reference(model, chelsea, result, maps,
                                                               method):
    target = result.images[0].predicted_class
    expected = reference_map(model, chelsea, target, guided=method == "guided_backprop")
    assert_relative(maps[method], expected)
    assert relative_difference(maps[method], maps["gradient"]) > 0.5


def test_gradient_matches_captums_saliency(model, chelsea, result, maps):
    from captum.attr import Saliency

    target = result.images[0].predicted_class
    x = chelsea.clone().requires_grad_(True)
    saliency = Saliency(copy.deepcopy(model)).attribute(x, target=target, abs=False)
    assert_relative(maps["gradient"], saliency[0].detach().numpy())


# Captum warns that it hooks ReLU modules; this model has none, which is the point.
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations:UserWarning")
def test_captums_guided_backprop_silently_returns_the_plain_gradient(model, chelsea, result,
                                                                     maps):
    from captum.attr import GuidedBackprop

    target = result.images[0].predicted_class
    x = chelsea.clone().requires_grad_(True)
    captum = GuidedBackprop(copy.deepcopy(model)).attribute(x, target=target)[0].detach().numpy()
    assert_relative(captum, maps["gradient"])  # hooks only nn.ReLU: no rule was applied
    assert relative_difference(captum, maps["guided_backprop"]) > 0.5


# --- Grad-CAM, Guided Grad-CAM, and DeconvNet's warning ---------------------------------------


def reference_gradcam(model: nn.Module, x: torch.Tensor, target: int, layer: str) -> np.ndarray:
    """Grad-CAM written out with a forward hook and plain autograd, upsampled bilinearly."""
    ref = copy.deepcopy(model).eval()
    outputs = []
    module = dict(ref.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, args, out: outputs.append(out))
    try:
        logits = ref(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, target], outputs[0])
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * outputs[0]).sum(1, keepdim=True))
    up = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)
    return up[0].detach().numpy()


def test_guided_gradcam_matches_an_independent_reference(model, chelsea):
    engine = Engine(model)
    result = engine.attribute(chelsea, ["gradcam", "guided_gradcam"])
    target = result.images[0].predicted_class
    assert engine.default_layer(chelsea) == "bn2"
    cam = reference_gradcam(model, chelsea, target, "bn2")
    assert_relative(result.images[0].maps[0].values, cam)
    guided = reference_map(model, chelsea, target, guided=True)
    assert_relative(result.images[0].maps[1].values, guided * cam)
    assert result.coverage[1].relu_calls == result.coverage[1].overridden == RELU6_PER_IMAGE


def test_deconvnet_maps_carry_the_input_independence_warning(result):
    # EfficientNet-Lite0 has no max-pooling and no gating: DeconvNet's map depends only on
    # the target class.
    for amap in result.images[0].maps:
        expected = [NO_INPUT_DEPENDENCE] if amap.method == "deconvnet" else []
        assert amap.warnings == expected, amap.method


def test_guided_smoothgrad_matches_an_independent_reference(model, chelsea):
    from captum_refs import noise_sigma, smoothgrad_noise

    spec = method_spec("smoothgrad", samples=2, base="guided_backprop")
    result = Engine(model).attribute(chelsea, [spec])
    target = result.images[0].predicted_class
    noisy = chelsea + noise_sigma(chelsea, 0.15) * smoothgrad_noise(chelsea, 2, position=0, item=0)
    expected = np.mean([reference_map(model, noisy[s:s + 1], target, guided=True)
                        for s in range(2)], axis=0)
    assert_relative(result.images[0].maps[0].values, expected)
    assert result.coverage[0].relu_calls == result.coverage[0].overridden == RELU6_PER_IMAGE
