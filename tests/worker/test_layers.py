"""The default Grad-CAM layer per model family, and the layouts it is read from."""

from __future__ import annotations

import pytest
import torch
from engine_testing import seeded_architecture
from small_transformers import SIDE, hf_vit, images, timm_model
from torch import nn

from shared.errors import SpecError, UnsupportedModelError
from shared.spec.layers import NCHW, NHWC, TOKENS, Layout
from shared.spec.methods import MethodSpec, method_spec
from shared.spec.targets import PREDICTED
from worker.engine.core import Engine
from worker.kinds.top_activations.feature_maps import layer_shapes


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


# Family: (the model, its default layer, that layer's layout, the stem it never is).
FAMILIES = {
    "vit": (lambda: timm_model("vit_tiny_patch16_224"), "blocks.1.norm1",
            Layout(TOKENS, 192, (4, 4), 1), "patch_embed"),
    "deit_distilled": (lambda: timm_model("deit_tiny_distilled_patch16_224"), "blocks.1.norm1",
                       Layout(TOKENS, 192, (4, 4), 2), "patch_embed"),
    "swin": (lambda: timm_model("swin_tiny_patch4_window7_224"), "layers.2.blocks.1.norm1",
             Layout(NHWC, 96, (4, 4)), "patch_embed"),
    # A token grid per stage (4×4, 2×2, 1×1), inferred from the token counts; no norm before
    # its attention, so its last stage with a grid.
    "levit": (lambda: timm_model("levit_128s"), "stages.1", Layout(TOKENS, 256, (2, 2)),
              "stem"),
    "convnext": (lambda: timm_model("test_convnext"), "stages", Layout(NCHW, 64, (2, 2)),
                 "stem"),
    "efficientnet": (lambda: timm_model("test_efficientnet"), "bn2",
                     Layout(NCHW, 256, (2, 2)), "conv_stem"),
    "mobilenetv3": (lambda: timm_model("mobilenetv3_small_050"), "blocks",
                    Layout(NCHW, 288, (2, 2)), "conv_stem"),
    "transformers_vit": (hf_vit, "model.vit.layers.1.layernorm_before",
                         Layout(TOKENS, 48, (4, 4), 1), "model.vit.embeddings"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_gets_its_default_layer_never_the_stem(family, no_mode_left):
    build, layer, layout, stem = FAMILIES[family]
    engine = Engine(build())
    x = images(1)
    layers = engine.layers(x)
    assert layers.default == layer and layers.layout(layer) == layout
    assert not layer.startswith(stem) and any(name.startswith(stem) for name in layers.layers)
    assert engine.resolve_layers(["gradcam"], x)[0]["layer"] == layer
    (amap,) = engine.attribute(x, ["gradcam"]).images[0].maps
    assert amap.values.shape == (1, SIDE, SIDE)
    assert amap.values.min() >= 0 and amap.values.max() > amap.values.min()


def test_hiera_is_refused_by_name():
    engine = Engine(timm_model("hiera_tiny_224"))
    with pytest.raises(UnsupportedModelError, match=r"methods\[0\].layer: no default layer.*"
                                                    "Hiera is not supported: its tokens are not "
                                                    "in raster order"):
        engine.attribute(images(1), ["gradcam"])
    with pytest.raises(SpecError, match="'blocks.1' outputs shape .*Hiera is not supported"):
        engine.attribute(images(1), [method_spec("gradcam", layer="blocks.1")])


class StemOnly(nn.Module):
    """A convolutional stem with a grid, then blocks that leave 1×1 of it."""

    class Block(nn.Sequential):
        def __init__(self, stride: int) -> None:
            super().__init__(nn.Conv2d(8, 8, stride, stride), nn.BatchNorm2d(8),
                             nn.Conv2d(8, 8, 1))

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.blocks = nn.Sequential(self.Block(8), self.Block(1))
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).flatten(1))


def test_the_stem_is_never_the_default_and_the_error_lists_what_to_name():
    with pytest.raises(UnsupportedModelError, match="`layer` parameter .*the last first: 'stem'"):
        Engine(StemOnly().eval()).default_layer(image(16))


def test_a_named_layer_in_no_layout_is_refused_with_the_reason():
    engine = Engine(timm_model("vit_tiny_patch16_224"))
    # batch × heads × tokens × dim: heads and tokens are no grid of the input.
    with pytest.raises(SpecError, match=r"methods\[0\].layer: module 'blocks.1.attn.k_norm' "
                                        r"outputs shape \[N, 3, 17, 64\].*nor N×H×W×C over a grid"):
        engine.attribute(images(1), [method_spec("gradcam", layer="blocks.1.attn.k_norm")])
    # The stem, or any layer read in a layout, can be named.
    for layer in ("patch_embed.proj", "blocks.0", "norm"):
        result = engine.attribute(images(1), [method_spec("gradcam", layer=layer)])
        assert result.images[0].maps[0].values.shape == (1, SIDE, SIDE)


def test_layer_shapes_list_every_layout_on_its_grid():
    shapes = layer_shapes(timm_model("swin_tiny_patch4_window7_224"), SIDE)
    assert shapes["patch_embed.proj"] == (24, 16, 16)  # N×C×H×W
    assert shapes["layers.0.blocks.0.norm1"] == (24, 16, 16)  # N×H×W×C
    assert shapes["layers.2"] == (96, 4, 4)
    assert "layers.0.blocks.0.attn.softmax" not in shapes  # windows × heads × tokens²
    shapes = layer_shapes(timm_model("deit_tiny_distilled_patch16_224"), SIDE)
    assert shapes["blocks.0.mlp.fc1"] == (768, 4, 4)  # two prefix tokens, then 4×4
    assert "head_dist" not in shapes


def test_the_runtime_names_the_default_layer_and_keeps_a_named_one(resnet18):
    methods = ["gradient", "gradcam", method_spec("guided_gradcam", layer="layer2"),
               MethodSpec("gradcam", {"layer": None}, as_object=True)]
    specs = Engine(resnet18).resolve_layers(methods, image(64))
    assert [s.to_json() for s in specs] == [
        {"name": "gradient", "render": "heatmap"},
        {"name": "gradcam", "layer": "layer4", "render": "cam"},
        {"name": "guided_gradcam", "layer": "layer2", "rule": "relu", "render": "signed"},
        {"name": "gradcam", "layer": "layer4", "render": "cam"}]


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


def test_a_channels_last_stage_is_read_as_channels_last():
    engine = Engine(ChannelsLast())
    layers = engine.layers(image(16))
    assert layers.layout("stem") == Layout(NCHW, 6, (4, 4))
    assert layers.layout("mix") == Layout(NHWC, 6, (4, 4))  # never 4 channels of 4×6
    assert layers.default == "mix"


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
    with pytest.raises(UnsupportedModelError, match="'mix'.* still carries the image's grid"):
        Engine(Square(permute=True)).default_layer(image(16))


def test_a_model_without_feature_maps_is_told_to_name_a_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UnsupportedModelError, match="`layer` parameter"):
        Engine(model).default_layer(torch.zeros(1, 3, 2, 2))


# Every transformers model type a bundle may hold, built as the service builds it
# (`HFClassifier`: the model's own module names), at 32 px.
HF_DEFAULTS = {
    "vit": ("vit.layers.1.layernorm_before", Layout(TOKENS, 32, (4, 4), 1)),
    "deit": ("deit.layers.1.layernorm_before", Layout(TOKENS, 32, (4, 4), 2)),
    "beit": ("beit.layers.1.layernorm_before", Layout(TOKENS, 32, (4, 4), 1)),
    "swin": ("swin.encoder.layers.1.blocks.0.layernorm_before", Layout(TOKENS, 32, (4, 4))),
    "convnext": ("convnext.encoder.stages.1", Layout(NCHW, 16, (4, 4))),
    "resnet": ("resnet.encoder.stages.1", Layout(NCHW, 16, (4, 4))),
    # Its last blocks are 1×1 at 32 px; the padding before a depthwise conv is not a layer.
    "efficientnet": ("efficientnet.encoder.blocks.5.expansion", Layout(NCHW, 96, (2, 2))),
}


@pytest.mark.parametrize("model_type", list(HF_DEFAULTS))
def test_transformers_bundle_models_get_their_default_layer_never_the_embeddings(model_type):
    from hf_bundles import tiny_model

    from worker.models.hugging_face import HFClassifier

    layer, layout = HF_DEFAULTS[model_type]
    layers = Engine(HFClassifier(tiny_model(model_type))).layers(image(32))
    assert (layers.default, layers.layout(layer)) == (layer, layout)
    assert ".embed" not in layers.default and "embedder" not in layers.default


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_a_width_equal_to_the_patch_count_is_read_as_tokens(name):
    # 16 channels over a 4×4 grid: N×(P + 16)×16 is tokens, not a token-mixing N×C×tokens.
    engine = Engine(timm_model(name, embed_dim=16, num_heads=2))
    layers = engine.layers(images(1))
    prefix = 2 if "distilled" in name else 1
    assert layers.default == "blocks.1.norm1"
    assert layers.layout("blocks.1.norm1") == Layout(TOKENS, 16, (4, 4), prefix)
    assert layers.layout("blocks.0") == Layout(TOKENS, 16, (4, 4), prefix)
