"""DeconvNet's structural warning: read from the autograd graph, and true where it is given."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.engine.input_dependence import NO_INPUT_DEPENDENCE, deconvnet_depends_on_input


def conv_relu_avgpool() -> nn.Module:
    """No max-pooling, no gating: eval BatchNorm, ReLU6, a residual sum, average pooling."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU6())
            self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 3))

        def forward(self, x):
            x = self.stem(x)
            return self.head(x + self.block(x))

    torch.manual_seed(0)
    return Net().eval()


class Gated(nn.Module):
    """Multiplicative gating: a feature map times its own channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc((h * h.mean((2, 3), keepdim=True)).flatten(1))


def deconvnet(model, x, target=1):
    result = Engine(model).attribute(x, ["gradient", "deconvnet"], ClassTarget(target))
    return [image.maps[1] for image in result.images], [image.maps[0] for image in result.images]


def test_without_input_dependent_operations_every_image_gets_the_same_map():
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    maps, gradients = deconvnet(conv_relu_avgpool(), x)
    assert all(m.warnings == [NO_INPUT_DEPENDENCE] for m in maps)
    assert all(g.warnings == [] for g in gradients)
    # What the warning says is true: the map is the same for every image...
    for m in maps[1:]:
        np.testing.assert_allclose(m.values, maps[0].values, rtol=1e-5, atol=1e-7)
    # ... while the gradient's is not.
    assert not np.allclose(gradients[1].values, gradients[0].values, rtol=1e-2)


def test_max_pool_switches_make_the_map_depend_on_the_input(tiny_cnn, tiny_images):
    maps, _ = deconvnet(tiny_cnn, tiny_images)
    assert all(m.warnings == [] for m in maps)
    assert not np.allclose(maps[1].values, maps[0].values, rtol=1e-2)


def test_multiplicative_gating_makes_the_map_depend_on_the_input():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    maps, _ = deconvnet(Gated().eval(), x)
    assert all(m.warnings == [] for m in maps)
    assert not np.allclose(maps[1].values, maps[0].values, rtol=1e-2)


def test_the_graph_rule_by_node():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    conv = nn.Conv2d(3, 4, 3).requires_grad_(False)
    bn = nn.BatchNorm2d(4).requires_grad_(False)
    assert not deconvnet_depends_on_input([bn.eval()(conv(x)).mean((2, 3)) * 2])
    assert deconvnet_depends_on_input([bn.train()(conv(x)).sum()])  # batch statistics
    assert deconvnet_depends_on_input([nn.functional.max_pool2d(conv(x), 2).sum()])
    assert deconvnet_depends_on_input([(conv(x) * conv(x)).sum()])
    assert deconvnet_depends_on_input([torch.sigmoid(conv(x)).sum()])
