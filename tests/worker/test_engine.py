"""The engine against Captum, against known answers, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attribution_refs import captum_maps, cosine, reference_maps
from engine_testing import METHODS, engine_maps, hook_count
from torch import nn
from toy_patterns import TinyCNN

from shared.errors import SpecError, UnsupportedModelError
from shared.spec.methods import MethodSpec, method_spec
from shared.spec.targets import ClassTarget, LayerTarget, TopKTarget
from worker.engine.core import Engine

# --- Captum 0.9 where Captum is right -----------------------------------------------------------

@pytest.mark.parametrize("architecture", ["resnet18", "vgg11"])
def test_agrees_with_captum_on_torchvision_models(architecture, request):
    model = request.getfixturevalue(architecture)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    classes = [1, 3]
    result = Engine(model).attribute(x, methods=METHODS,
                                     targets=[ClassTarget(c) for c in classes])
    for m, method in enumerate(METHODS):
        ours = np.stack([image.maps[m].values for image in result.images])
        theirs = captum_maps(method, model, x, classes)
        assert np.abs(ours).max() > 0
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6, err_msg=method)
    assert result.coverage[METHODS.index("guided_backprop")].complete


class FunctionalNet(nn.Module):
    """ReLUs as Captum cannot see them: functional calls and one in-place module reused."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, 8, 3, padding=1) for c in (3, 8, 8, 8, 8))
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 5)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convs
        x = self.pool(F.relu(c[0](x)))
        x = torch.relu(c[1](x))
        x = c[2](x)
        x.relu_()
        x = self.pool(self.relu(c[3](x)))
        x = self.pool(self.relu(c[4](x)))
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


class DistinctNet(FunctionalNet):
    """The same network with one distinct, non-in-place `nn.ReLU` per use (Captum's case)."""

    def __init__(self) -> None:
        super().__init__()
        self.acts = nn.ModuleList(nn.ReLU() for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, a = self.convs, self.acts
        x = self.pool(a[0](c[0](x)))
        x = a[1](c[1](x))
        x = a[2](c[2](x))
        x = self.pool(a[3](c[3](x)))
        x = self.pool(a[4](c[4](x)))
        return self.fc2(a[5](self.fc1(x.flatten(1))))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_functional_and_reused_relus_match_distinct_modules(method):
    torch.manual_seed(0)
    functional = FunctionalNet().eval()
    distinct = DistinctNet().eval()
    distinct.load_state_dict(functional.state_dict())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    classes = [0, 4]
    targets = [ClassTarget(c) for c in classes]

    result = Engine(functional).attribute(x, methods=(method,), targets=targets)
    assert result.coverage[0].relu_calls == result.coverage[0].overridden == 6
    ours = np.stack([image.maps[0].values for image in result.images])
    right = captum_maps(method, distinct, x, classes)
    np.testing.assert_allclose(ours, right, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(engine_maps(distinct, x, method, targets), right,
                               rtol=1e-4, atol=1e-6)
    # Captum only hooks modules: on the functional network it silently differs.
    wrong = captum_maps(method, functional, x, classes)
    assert not np.allclose(wrong, right, rtol=1e-2, atol=1e-4)


# --- Known answers -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_gradient_of_a_linear_model_is_the_weight_row(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6))
    x = torch.randn(2, 3, 4, 5)
    result = Engine(model).attribute(x, methods=(method,), targets=[ClassTarget(2),
                                                                     ClassTarget(5)])
    weight = model[1].weight.detach().numpy()
    np.testing.assert_array_equal(result.images[0].maps[0].values, weight[2].reshape(3, 4, 5))
    np.testing.assert_array_equal(result.images[1].maps[0].values, weight[5].reshape(3, 4, 5))
    assert result.coverage[0].relu_calls == 0


def test_deconvnet_through_max_pool_reaches_only_the_arg_max():
    torch.manual_seed(0)
    model = nn.Sequential(nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    values = engine_maps(model, x, "deconvnet", [ClassTarget(1)])[0]

    # By hand: each 2×2 window passes max(w, 0) of its pooled unit to its arg-max, and nothing
    # to the other three pixels, whatever the sign of the forward input.
    windows = x[0].numpy().reshape(2, 3, 2, 3, 2).transpose(0, 1, 3, 2, 4).reshape(2, 3, 3, 4)
    arg_max = windows.argmax(-1)
    w = np.clip(model[3].weight.detach().numpy()[1].reshape(2, 3, 3), 0, None)
    expected = np.zeros((2, 3, 3, 4), np.float32)
    np.put_along_axis(expected, arg_max[..., None], w[..., None], axis=-1)
    expected = expected.reshape(2, 3, 3, 2, 2).transpose(0, 1, 3, 2, 4).reshape(2, 6, 6)
    np.testing.assert_array_equal(values, expected)
    assert np.count_nonzero(values) <= 2 * 3 * 3  # at most one pixel per window


@pytest.mark.parametrize("method", METHODS)
def test_one_relu_by_hand(method):
    """y = w2 · relu(W1 x): each rule written out with numpy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    x = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    W1, b1 = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    w2 = model[3].weight.detach().numpy()[2]
    h = W1 @ x.numpy().ravel() + b1
    assert (h > 0).any() and (h <= 0).any() and (w2 > 0).any() and (w2 < 0).any()
    g = {
        "gradient": w2 * (h > 0),
        "guided_backprop": np.clip(w2, 0, None) * (h > 0),
        "deconvnet": np.clip(w2, 0, None),
    }[method]
    values = engine_maps(model, x, method, [ClassTarget(2)])[0]
    np.testing.assert_allclose(values, (W1.T @ g).reshape(3, 2, 2), rtol=1e-5, atol=1e-7)


def test_relu6_models_use_the_relu_rule_below_six():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(inplace=True), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    x = 4 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    for method in METHODS:
        expected, _ = reference_maps(method, model, x, [1, 1])
        np.testing.assert_allclose(engine_maps(model, x, method, [ClassTarget(1)] * 2),
                                   expected, rtol=1e-5, atol=1e-7)


# --- Predictions, sharing, eval mode -------------------------------------------------------------

def test_prediction_and_one_forward_for_all_methods(tiny_cnn, tiny_images):
    forwards = []
    tiny_cnn.register_forward_pre_hook(lambda module, args: forwards.append(1))
    engine = Engine(tiny_cnn)
    engine.attribute(tiny_images, methods=METHODS)  # measures the memory per row, once
    forwards.clear()
    result = engine.attribute(tiny_images, methods=METHODS)
    assert len(forwards) == 1  # the hook is copied with the model; it fired once

    probs = tiny_cnn(tiny_images).softmax(1).detach()
    for i, image in enumerate(result.images):
        assert image.predicted_class == int(probs[i].argmax())
        assert image.score == pytest.approx(float(probs[i].max()), rel=1e-5)
        assert [m.method for m in image.maps] == list(METHODS)
        for m in image.maps:
            assert m.target == {"class": image.predicted_class}
            assert m.values.dtype == np.float32 and m.values.shape == (3, 32, 32)
    for position in range(len(METHODS)):
        assert result.coverage[position].applied == result.coverage[position].relu_calls == 4


def test_results_of_one_call_equal_separate_calls(tiny_cnn, tiny_images):
    together = Engine(tiny_cnn).attribute(tiny_images, methods=METHODS)
    for m, method in enumerate(METHODS):
        alone = Engine(tiny_cnn).attribute(tiny_images, methods=(method,))
        for a, b in zip(together.images, alone.images, strict=True):
            np.testing.assert_array_equal(a.maps[m].values, b.maps[0].values)


def test_batchnorm_runs_in_eval_mode_on_a_training_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 2))
    model[1].running_mean.uniform_(-1, 1)
    model.train()
    x = torch.randn(4, 3, 8, 8)
    batch = engine_maps(model, x, "guided_backprop", [ClassTarget(0)] * 4)
    single = engine_maps(model, x[1:2], "guided_backprop", [ClassTarget(0)])
    np.testing.assert_allclose(batch[1], single[0], rtol=1e-5, atol=1e-7)
    expected, _ = reference_maps("guided_backprop", model, x, [0] * 4)  # eval-mode reference
    np.testing.assert_allclose(batch, expected, rtol=1e-5, atol=1e-7)
    assert model.training


# --- Reduced precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_bfloat16_autocast_maps_stay_close_to_float32(trained_cnn, method):
    from toy_patterns import TEST_SEED, make_dataset

    x, _ = make_dataset(4, TEST_SEED)
    full = engine_maps(trained_cnn, x, method, [ClassTarget(0)] * 4)
    low = engine_maps(trained_cnn, x, method, [ClassTarget(0)] * 4, precision="bfloat16")
    assert low.dtype == np.float32
    for a, b in zip(full, low, strict=True):
        assert cosine(a, b) > 0.9


@pytest.mark.parametrize("method", METHODS)
def test_float16_autocast_runs_on_cpu_and_stays_close(trained_cnn, method):
    from toy_patterns import TEST_SEED, make_dataset

    x, _ = make_dataset(2, TEST_SEED)
    full = engine_maps(trained_cnn, x, method, [ClassTarget(1)] * 2)
    low = engine_maps(trained_cnn, x, method, [ClassTarget(1)] * 2, precision="float16")
    for a, b in zip(full, low, strict=True):
        assert cosine(a, b) > 0.99


def test_channels_last_gives_the_same_maps(tiny_cnn, tiny_images):
    for method in METHODS:
        plain = engine_maps(tiny_cnn, tiny_images, method)
        fast = engine_maps(tiny_cnn, tiny_images, method, channels_last=True)
        np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-6)


# --- Refusals ------------------------------------------------------------------------------------

class SiLUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.SiLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.relu(self.act(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_silu_models_are_refused_by_name_for_modified_relu_methods(method, no_mode_left):
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UnsupportedModelError, match="SiLU"):
        Engine(SiLUNet()).attribute(x, methods=(method,))
    with pytest.raises(UnsupportedModelError, match="SiLU"):
        Engine(SiLUNet()).attribute(x, methods=("gradient", method))


def test_silu_models_work_with_the_gradient(no_mode_left):
    torch.manual_seed(0)
    model = SiLUNet().eval()
    x = torch.randn(2, 3, 8, 8)
    result = Engine(model).attribute(x, methods=("gradient",), targets=[ClassTarget(1)] * 2)
    expected, _ = reference_maps("gradient", model, x, [1, 1])
    np.testing.assert_allclose(np.stack([i.maps[0].values for i in result.images]), expected,
                               rtol=1e-5, atol=1e-7)


class HiddenReLU(nn.Module):
    """A ReLU computed with torch functions disabled: invisible to the override."""

    def forward(self, x):
        with torch._C.DisableTorchFunction():
            return torch.relu(x)


def test_an_escaped_relu_is_detected_and_refused(no_mode_left):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), HiddenReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    x = torch.randn(1, 3, 8, 8)
    result = Engine(model).attribute(x, methods=("gradient",))
    assert result.coverage[0].relu_calls == 1
    assert result.coverage[0].overridden == 0
    with pytest.raises(UnsupportedModelError, match="escaped"):
        Engine(model).attribute(x, methods=("guided_backprop",))


@pytest.mark.parametrize(("spec", "rows_per_image"), [
    ("gradient", 1),
    (method_spec("smoothgrad", samples=5), 5),
    (method_spec("smoothgrad", samples=5, base="guided_backprop"), 5),
    (method_spec("integrated_gradients", steps=6), 6),
], ids=["gradient", "smoothgrad", "smoothgrad-guided", "integrated_gradients"])
def test_coverage_counts_the_rule_in_every_backward_pass(spec, rows_per_image, tiny_cnn,
                                                         tiny_images):
    """A method's `applied` is its rectifiers times its backward passes, whether the pass
    runs the override (a guided base) or autograd's own rule (the gradient, SmoothGrad over
    it, the integrated gradient's path): one pass, or one per micro-batch of rows."""
    passes = []

    def count_backward_passes(module, args):
        if torch.is_grad_enabled():  # the forward passes that keep a graph for a backward
            passes.append(len(args[0]))

    tiny_cnn.register_forward_pre_hook(count_backward_passes)
    engine = Engine(tiny_cnn)
    engine.attribute(tiny_images, [spec], ClassTarget(1))  # measures the memory per row, once
    passes.clear()
    coverage = engine.attribute(tiny_images, [spec], ClassTarget(1)).coverage[0]
    assert sum(passes) == len(tiny_images) * rows_per_image
    assert coverage.relu_calls == 4
    assert coverage.applied == coverage.relu_calls * len(passes)


def test_bad_arguments(tiny_cnn, tiny_images):
    engine = Engine(tiny_cnn)
    with pytest.raises(SpecError, match="unknown method"):
        engine.attribute(tiny_images, methods=("lrp",))
    with pytest.raises(ValueError, match="at least one method"):
        engine.attribute(tiny_images, methods=())
    with pytest.raises(ValueError, match="targets for 3 images"):
        engine.attribute(tiny_images, targets=[ClassTarget(0)] * 2)
    with pytest.raises(ValueError, match="precision"):
        Engine(tiny_cnn, precision="int8")


def test_a_model_without_logits_is_refused(no_mode_left):
    model = nn.Conv2d(3, 2, 3)
    with pytest.raises(UnsupportedModelError, match="logits"):
        Engine(model).attribute(torch.randn(1, 3, 8, 8))


# --- The call's interface: positions, probabilities, extras, seeds ---------------------------

ALL_METHODS = ["gradient", "guided_backprop", "deconvnet", "gradcam", "guided_gradcam",
               method_spec("smoothgrad", samples=2), method_spec("integrated_gradients", steps=4),
               method_spec("occlusion", patch=16, stride=16)]


def test_every_method_in_one_call(tiny_cnn, tiny_images, no_mode_left):
    result = Engine(tiny_cnn).attribute(tiny_images, ALL_METHODS, TopKTarget(2))
    names = [m if isinstance(m, str) else m.name for m in ALL_METHODS]
    probs = tiny_cnn(tiny_images).softmax(1).detach().numpy()
    for i, image in enumerate(result.images):
        assert image.probs.dtype == np.float32
        np.testing.assert_allclose(image.probs, probs[i], rtol=1e-5, atol=1e-7)
        assert [(m.method, m.position) for m in image.maps] == [
            (name, p) for p, name in enumerate(names) for _ in range(2)]
        top = list(np.argsort(-probs[i])[:2])
        for m in image.maps:
            assert m.target == {"class": top[image.maps.index(m) % 2]}
            assert m.values.dtype == np.float32
            assert m.values.shape == ((1, 32, 32) if m.method == "gradcam" else (3, 32, 32))
            assert set(m.extras) == ({"convergence_delta"} if m.method == "integrated_gradients"
                                     else {"grid"} if m.method == "gradcam" else set())
            assert m.warnings == []
    no_rule = {"gradcam", "occlusion"}
    for p, name in enumerate(names):
        assert (result.coverage[p] is None) == (name in no_rule), name
        if name in ("guided_backprop", "deconvnet", "guided_gradcam"):
            assert result.coverage[p].complete, name
        elif name not in no_rule:  # the plain gradient's rule is autograd's own
            assert result.coverage[p].relu_calls == 4, name


def test_method_specs_get_their_defaults_and_unknown_parameters_are_refused(tiny_cnn,
                                                                          tiny_images):
    engine = Engine(tiny_cnn)
    bare = MethodSpec("occlusion", {"patch": 16})  # stride and fill from the defaults
    full = method_spec("occlusion", patch=16, stride=8, fill="mean")
    a = engine.attribute(tiny_images, [bare]).images[0].maps[0].values
    b = engine.attribute(tiny_images, [full]).images[0].maps[0].values
    np.testing.assert_array_equal(a, b)
    with pytest.raises(SpecError, match="'samples' .*not a parameter|methods.samples"):
        engine.attribute(tiny_images, [MethodSpec("occlusion", {"samples": 3})])


def test_seeds_are_one_per_image(tiny_cnn, tiny_images):
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        Engine(tiny_cnn).attribute(tiny_images, ["gradient"], seeds=[1, 2])


def test_sampling_and_path_methods_take_layer_targets(tiny_cnn, tiny_images):
    from attribution_refs import layer_gradient

    target = LayerTarget("conv3", 5)
    spec = method_spec("integrated_gradients", steps=64)
    result = Engine(tiny_cnn).attribute(tiny_images, [spec, method_spec("smoothgrad",
                                                                        noise=0.0, samples=2)],
                                        target)
    expected = layer_gradient(tiny_cnn, tiny_images, "conv3", 5)
    for i, image in enumerate(result.images):
        ig, smooth = image.maps
        assert ig.target == smooth.target == {"layer": "conv3", "channel": 5}
        total = float(np.abs(ig.values).sum())
        assert total > 0 and abs(ig.extras["convergence_delta"]) < 0.02 * total
        np.testing.assert_allclose(smooth.values, expected[i], rtol=1e-5, atol=1e-7)


def test_new_methods_leave_the_callers_model_untouched(tiny_images, no_mode_left):
    torch.manual_seed(0)
    model = TinyCNN(num_classes=4).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    Engine(model).attribute(tiny_images, ALL_METHODS, LayerTarget("conv3", 1))
    assert hook_count(model) == 0 and model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_an_engine_of_another_engines_model_sees_each_module_once(tiny_images):
    """An engine's model carries its layer taps; an engine built on a copy of it (the audit's
    sanity check does so) drops them, so each module reports once: the same default layer,
    the same layer activations, the same maps."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=4).eval()
    x = F.interpolate(tiny_images, size=64)
    first = Engine(model)
    second = Engine(first.model)
    assert first.default_layer(x[:1]) == second.default_layer(x[:1]) == "bn2"
    methods = ["gradcam", "gradient"]
    target = LayerTarget("bn2", 3)
    for a, b in zip(first.attribute(x, methods, ClassTarget(1)).images,
                    second.attribute(x, methods, ClassTarget(1)).images, strict=True):
        for ma, mb in zip(a.maps, b.maps, strict=True):
            np.testing.assert_allclose(mb.values, ma.values, rtol=1e-6, atol=1e-9)
    one = first.attribute(x, ["gradient"], target).images[0].maps[0].values
    np.testing.assert_allclose(second.attribute(x, ["gradient"], target).images[0].maps[0].values,
                               one, rtol=1e-6, atol=1e-9)
