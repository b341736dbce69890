"""The torchvision zoo as regression: full override coverage, and an independent reference.

These architectures call ReLU in every way module hooks miss: ResNet reuses one in-place
`nn.ReLU` per block, GoogLeNet and Inception-v3 end each conv block in
`F.relu(x, inplace=True)`, DenseNet's head is functional, MobileNet-v2 uses `nn.ReLU6`.

The reference (`attribution_refs.reference_maps`) patches `F.relu`, `torch.relu`,
`Tensor.relu(_)`, `F.hardtanh` and `F.relu6` with its own autograd function for the time of
one forward pass. That is a different mechanism from the engine's (a thread-local torch
function mode) and from Captum's (module hooks), and it counts its own calls, so it also
cross-checks the engine's coverage count. Module hooks on distinct ReLU modules would not do
here: these models call functional ReLUs that no module owns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_refs import cosine, reference_maps
from engine_testing import METHODS, ZOO_CLASSES, seeded_architecture

from shared.spec.targets import ClassTarget
from worker.engine.core import Engine

ZOO = {  # architecture: input side (Inception-v3 needs at least 75 pixels)
    "resnet18": 64,
    "vgg11": 32,
    "densenet121": 32,
    "googlenet": 48,
    "inception_v3": 75,
    "mobilenet_v2": 32,
}


@pytest.mark.parametrize("architecture", list(ZOO))
def test_zoo_model_has_full_coverage_and_matches_the_reference(architecture, request):
    if architecture == "vgg11":
        model = request.getfixturevalue("vgg11")  # shared with the Captum test
    else:
        model = seeded_architecture(architecture)
    side = ZOO[architecture]
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(5))
    target = ZOO_CLASSES - 1

    result = Engine(model).attribute(x, methods=METHODS, targets=ClassTarget(target))
    maps = {m.method: m.values for m in result.images[0].maps}
    relu_calls = result.coverage[0].relu_calls
    assert relu_calls > 0
    for position, method in enumerate(METHODS):
        coverage = result.coverage[position]
        assert coverage.relu_calls == coverage.overridden == relu_calls, method
        assert coverage.applied == relu_calls, method

    gradient, _ = reference_maps("gradient", model, x, [target])
    np.testing.assert_allclose(maps["gradient"], gradient[0], rtol=1e-4, atol=1e-6)
    for method in ("guided_backprop", "deconvnet"):
        expected, seen = reference_maps(method, model, x, [target])
        assert seen == relu_calls, f"the reference saw {seen} rectifiers, the engine {relu_calls}"
        np.testing.assert_allclose(maps[method], expected[0], rtol=1e-4, atol=1e-6,
                                   err_msg=method)
        assert np.abs(maps[method]).max() > 0
        assert cosine(maps[method], maps["gradient"]) < 0.99, method
