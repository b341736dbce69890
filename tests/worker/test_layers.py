"""The default Grad-CAM layer per model family, and the layouts it is read from."""

from __future__ import annotations

import pytest
import torch
from engine_testing import seeded_architecture
from torch import nn

from shared.errors import SpecError, UnsupportedModelError
from shared.methods import MethodSpec, method_spec
from shared.targets import PREDICTED
from worker.engine import Engine
from worker.feature_maps import layer_shapes


def timm_model(name: str, **kwargs) -> nn.Module:
    """A timm model with seeded random weights (nothing downloaded)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval()


def image(side: int) -> torch.Tensor:
    return torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("architecture", "side", "layer"), [
    ("resnet18", 64, "layer4"),
    ("vgg11", 32, "features.19"),  # the last ReLU, before the last max-pool
    ("mobilenet_v2", 64, "features"),
    ("densenet121", 64, "features"),
    ("timm:efficientnet_lite0", 64, "bn2"),  # BatchNormAct2d: the head conv's BN and ReLU6
])
def test_the_last_convolutional_block_of_each_family(architecture, side, layer, request):
    model = request.getfixturevalue(architecture) if architecture in ("resnet18", "vgg11") \
        else seeded_architecture(architecture)
    assert Engine(model).default_layer(image(side)) == layer


# Families whose last 4-D output comes after the global pooling (head.norm, act2): the
# default is the last grid before it.
@pytest.mark.parametrize(("name", "layer"), [
    ("convnext_atto", "stages"),
    ("convnextv2_atto", "stages"),
    ("poolformer_s12", "stages"),
    ("caformer_s18", "stages"),  # attention stages, turned back into the grid by the stage
    ("mobilenetv3_small_050", "blocks"),  # the head conv runs on the pooled 1×1
    ("mobilenetv4_conv_small", "blocks"),
    ("ghostnet_050", "blocks"),
])
def test_the_layer_is_before_the_global_pooling_and_its_map_is_not_constant(name, layer):
    engine = Engine(timm_model(name))
    x = image(64)
    assert engine.default_layer(x) == layer
    assert engine.resolve_layers(["gradcam"], x)[0]["layer"] == layer
    (amap,) = engine.attribute(x, ["gradcam"], PREDICTED).images[0].maps
    assert amap.values.shape == (1, 64, 64)
    assert amap.values.min() >= 0 and amap.values.max() > amap.values.min()


def test_a_last_stage_without_a_grid_gives_the_stage_before(resnet18):
    # At 32 px resnet18's layer4 is 1×1: its Grad-CAM map would be one uniform cell.
    assert Engine(resnet18).default_layer(image(32)) == "layer3"


TRANSFORMERS = {  # name: (timm arguments, input side, the N×C×H×W stem the error lists)
    "vit_tiny_patch16_224": ({"img_size": 32}, 32, "patch_embed.proj"),
    "swin_tiny_patch4_window7_224": ({"img_size": 64, "window_size": 2}, 64,
                                     "patch_embed.proj"),
    "levit_128s": ({"img_size": 64}, 64, "stem"),
}


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_transformers_get_no_default_and_are_told_which_layers_to_name(name, no_mode_left):
    kwargs, side, stem = TRANSFORMERS[name]
    engine = Engine(timm_model(name, **kwargs))
    with pytest.raises(UnsupportedModelError) as info:
        engine.attribute(image(side), ["gradient", "gradcam"])
    message = str(info.value)
    assert message.startswith("methods[1].layer: no default layer")
    assert "`layer` parameter" in message and f"'{stem}'" in message
    with pytest.raises(UnsupportedModelError, match=r"methods\[0\].layer: no default layer"):
        engine.resolve_layers(["guided_gradcam"], image(side))


@pytest.mark.parametrize(("name", "layer"), [
    ("vit_tiny_patch16_224", "blocks.11.attn.k_norm"),  # heads × tokens × dim
    ("swin_tiny_patch4_window7_224", "norm"),  # N×H×W×C
])
def test_a_named_layer_of_another_layout_is_refused(name, layer):
    kwargs, side, stem = TRANSFORMERS[name]
    engine = Engine(timm_model(name, **kwargs))
    with pytest.raises(SpecError, match=rf"methods\[0\].layer: module '{layer}' outputs shape "
                                        r".*not established as an N×C×H×W feature map"):
        engine.attribute(image(side), [method_spec("gradcam", layer=layer)])
    # The stem itself can be named.
    result = engine.attribute(image(side), [method_spec("gradcam", layer=stem)])
    assert result.images[0].maps[0].values.shape == (1, side, side)


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_layer_shapes_list_only_the_convolutional_stem(name):
    kwargs, side, stem = TRANSFORMERS[name]
    shapes = layer_shapes(timm_model(name, **kwargs), side)
    assert stem in shapes and all(n.startswith(stem) for n in shapes), sorted(shapes)


def test_the_runtime_names_the_default_layer_and_keeps_a_named_one(resnet18):
    methods = ["gradient", "gradcam", method_spec("guided_gradcam", layer="layer2"),
               MethodSpec("gradcam", {"layer": None}, as_object=True)]
    specs = Engine(resnet18).resolve_layers(methods, image(64))
    assert [s.to_json() for s in specs] == [
        "gradient", {"name": "gradcam", "layer": "layer4"},
        {"name": "guided_gradcam", "layer": "layer2", "rule": "relu"},
        {"name": "gradcam", "layer": "layer4"}]


def test_a_block_that_ends_in_functional_calls_and_a_global_max_pool(tiny_cnn):
    # TinyCNN: conv3, then torch.relu (no module), then AdaptiveMaxPool2d inside `head`.
    assert Engine(tiny_cnn).default_layer(torch.zeros(1, 3, 32, 32)) == "conv3"


class ChannelsLast(nn.Module):
    """A conv stem, then blocks in N×H×W×C (as Swin's), pooled over H and W."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 4, stride=4)
        self.mix = nn.Linear(6, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(self.stem(x).permute(0, 2, 3, 1))
        return self.fc(x.mean((1, 2)))


def test_a_channels_last_stage_is_never_read_as_channels():
    engine = Engine(ChannelsLast())
    with pytest.raises(UnsupportedModelError, match="'mix' still carries the image's grid"):
        engine.default_layer(image(16))
    assert list(layer_shapes(ChannelsLast(), 16)) == ["stem"]


class Square(nn.Module):
    """A last map with as many channels as rows and columns (16×16×16), then a ReLU module,
    and a stage that permutes such a map to N×H×W×C (same shape, other layout)."""

    def __init__(self, permute: bool) -> None:
        super().__init__()
        self.conv, self.relu, self.permute = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), permute
        self.mix = nn.Identity()
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))
        if self.permute:
            x = self.mix(x.permute(0, 2, 3, 1) * 1.0)
            return self.fc(x.mean((1, 2)))
        return self.fc(x.mean((2, 3)))


def test_a_map_with_as_many_channels_as_rows_keeps_its_layout_through_element_wise_calls():
    assert Engine(Square(permute=False)).default_layer(image(16)) == "relu"
    with pytest.raises(UnsupportedModelError, match="'mix' still carries the image's grid"):
        Engine(Square(permute=True)).default_layer(image(16))


def test_a_model_without_feature_maps_is_told_to_name_a_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UnsupportedModelError, match="`layer` parameter"):
        Engine(model).default_layer(torch.zeros(1, 3, 2, 2))
