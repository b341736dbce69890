"""Each objective against the model's own forward pass read independently (a forward hook
or the logits), and the errors that name the objective's field."""

from __future__ import annotations

import pytest
import torch

from shared.errors import TargetError
from shared.spec.inputs import InputRef
from shared.spec.layers import NCHW, Layout
from shared.spec.visualize import DreamObjective, InvertObjective
from worker.kinds.visualize.objectives import (
    ChannelActivation,
    ClassLogit,
    LayerEnergy,
    RepresentationDistance,
    objective_function,
)

LAYER2 = Layout(NCHW, 128, (8, 8))  # resnet18's layer2 at 64 px


@pytest.fixture(scope="module")
def forward(resnet18_model):
    """The logits and layer2's output of a batch of two images, read with a plain hook."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    recorded = {}
    handle = resnet18_model.layer2.register_forward_hook(
        lambda module, args, out: recorded.setdefault("layer2", out))
    try:
        with torch.no_grad():
            logits = resnet18_model(x)
    finally:
        handle.remove()
    return logits, recorded


def test_class_logit_is_the_score_before_the_softmax(forward):
    logits, acts = forward
    torch.testing.assert_close(ClassLogit(2, "objective")(logits, acts), logits[:, 2])


def test_channel_is_the_mean_of_its_map_and_a_neuron_its_value(forward):
    logits, acts = forward
    layer2 = acts["layer2"]  # 2×128×8×8
    channel = ChannelActivation("layer2", 5, None, "objective", LAYER2)
    torch.testing.assert_close(channel(logits, acts), layer2[:, 5].mean(dim=(1, 2)))
    neuron = ChannelActivation("layer2", 5, (3, 6), "objective", LAYER2)
    torch.testing.assert_close(neuron(logits, acts), layer2[:, 5, 3, 6])


def test_representation_distance_is_relative_to_the_targets_size(forward):
    logits, acts = forward
    target = acts["layer2"][:1]
    distance = RepresentationDistance("layer2", target, "objective")
    values = distance(logits, acts)
    assert float(values[0]) == 0
    expected = ((acts["layer2"][1] - target[0]) ** 2).sum() / (target ** 2).sum()
    torch.testing.assert_close(values[1], expected)


def test_layer_energy_is_the_mean_square_of_the_layer(forward):
    logits, acts = forward
    expected = (acts["layer2"] ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(LayerEnergy("layer2", "objective")(logits, acts), expected)


@pytest.mark.parametrize(("function", "field"), [
    (ClassLogit(4, "objective[1]"), "objective[1].class"),
    (ChannelActivation("layer2", 128, None, "objective[0]", LAYER2), "objective[0].channel"),
    (ChannelActivation("layer2", 1, (8, 0), "objective", LAYER2), "objective.position"),
    (ChannelActivation("layer3", 1, None, "objective", LAYER2), "objective.layer"),
])
def test_out_of_range_targets_name_the_objective_field(forward, function, field):
    logits, acts = forward
    with pytest.raises(TargetError) as info:
        function(logits, acts)
    assert str(info.value).startswith(f"{field}: ")


def test_objective_functions_are_built_from_spec_objectives():
    dream = objective_function(DreamObjective(InputRef("item", 0), "layer1"), "objective")
    assert isinstance(dream, LayerEnergy) and dream.layers == ("layer1",)
    with pytest.raises(ValueError, match="representation"):
        objective_function(InvertObjective(InputRef("item", 0), "layer1"), "objective")
