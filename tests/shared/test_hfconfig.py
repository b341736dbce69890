"""What the API reads from a bundle's configs, without torch: configs asking for code or for
an unsupported model type are refused, the classes come from `id2label`, the preprocessing
from `preprocessor_config.json` (hand-derived values here; `tests/worker/test_hf_models.py`
compares with transformers' own processors), and the spec's own fields win."""

from __future__ import annotations

import pytest

from shared.errors import SpecError, UndecodableError, UnsupportedModelError
from shared.models.bundles import Bundle
from shared.models.hfconfig import MODEL_TYPES, check_config, labels, spec_from_bundle
from shared.models.hfpreprocessing import normalization, sizes
from shared.spec.model import parse_model_spec

VIT = {"model_type": "vit", "image_size": 32, "patch_size": 8,
       "id2label": {"0": "cat", "1": "dog", "2": "eel"}}
PREP = {"do_resize": True, "size": {"height": 40, "width": 40}, "do_normalize": True,
        "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.5], "do_rescale": True,
        "rescale_factor": 1 / 255, "image_processor_type": "ViTImageProcessor"}


def bundle(config: dict = VIT, prep: dict | None = PREP) -> Bundle:
    return Bundle(config, prep, {})


@pytest.mark.parametrize("config, says", [
    ({**VIT, "auto_map": {"AutoModelForImageClassification": "m.Evil"}}, "'auto_map'"),
    ({**VIT, "trust_remote_code": True}, "'trust_remote_code'"),
    ({**VIT, "custom_pipelines": {"x": {}}}, "'custom_pipelines'"),
    ({**VIT, "quantization_config": {"quant_method": "bitsandbytes"}}, "quantization_config"),
    ({**VIT, "backbone_config": {"model_type": "x", "auto_map": {}}}, "backbone_config.auto_map"),
    ({**VIT, "layers": [{}, {"auto_map": "x"}]}, r"layers\[1\].auto_map"),
    ({**VIT, "model_type": "clip"}, "model_type 'clip'; the model types accepted are"),
    ({k: v for k, v in VIT.items() if k != "model_type"}, "has no model_type"),
    ({**VIT, "num_hidden_layers": 1_000_000}, "1000000 layers"),
    ({"model_type": "swin", "depths": [2, 2, 10_000, 2]}, "10006 layers"),
    ({"model_type": "efficientnet", "depth_coefficient": 1e6}, "layers"),
    ({**VIT, "image_size": 1024, "patch_size": 1}, "1048576 tokens"),
    ({"model_type": "swin", "window_size": 1000}, "window_size"),
])
def test_configs_asking_for_code_or_for_what_is_not_supported_are_refused(config, says):
    with pytest.raises(UnsupportedModelError, match=says):
        check_config(config)


@pytest.mark.parametrize("config", [{**VIT, "num_hidden_layers": "12"},
                                    {**VIT, "architectures": "ViTForImageClassification"},
                                    {**VIT, "patch_size": 0}])
def test_malformed_configs_are_refused(config):
    with pytest.raises(UndecodableError, match="config.json"):
        check_config(config)


def test_the_seven_model_types_are_accepted():
    assert sorted(MODEL_TYPES) == ["beit", "convnext", "deit", "efficientnet", "resnet", "swin",
                                   "vit"]
    for model_type in MODEL_TYPES:
        assert check_config({"model_type": model_type}) == model_type


def test_classes_come_from_id2label_or_num_labels():
    assert labels(VIT) == (3, ("cat", "dog", "eel"))
    assert labels({"num_labels": 5}) == (5, None)
    assert labels({}) == (2, None)  # transformers' default
    assert labels({"id2label": {"1": "b", "0": "a"}, "num_labels": 2}) == (2, ("a", "b"))


@pytest.mark.parametrize("config, says", [
    ({"id2label": {"0": "a", "1": "b"}, "num_labels": 3}, "num_labels 3 but id2label"),
    ({"id2label": {"0": "a", "2": "b"}}, "class 1"),
    ({"id2label": {"0": 7}}, "class 0"),
    ({"id2label": {"0": "x" * 300}}, "at most 256"),
    ({"id2label": []}, "id2label must map"),
    ({"num_labels": 0}, "num_labels must be"),
])
def test_malformed_labels_are_refused(config, says):
    with pytest.raises(UndecodableError, match=says):
        labels(config)


@pytest.mark.parametrize("prep, image_size, expected", [
    (PREP, None, (40, 40)),  # ViT: resized to 40×40
    ({"size": {"height": 256, "width": 256}, "do_center_crop": True,
      "crop_size": {"height": 224, "width": 224}}, None, (224, 256)),  # DeiT
    ({"size": {"shortest_edge": 224}, "crop_pct": 0.875}, None, (224, 256)),  # ConvNeXt
    ({"size": {"shortest_edge": 384}, "crop_pct": 0.875}, None, (384, 384)),  # warped
    ({"size": {"shortest_edge": 64}, "do_center_crop": True, "crop_size": 56}, None, (56, 64)),
    ({"size": 48}, None, (48, 48)),  # an older processor's int size
    ({"do_resize": False, "do_center_crop": True, "crop_size": 32}, None, (32, 32)),
    ({"do_resize": False}, (64, 64), (64, 64)),
    (None, (96, 96), (96, 96)),  # no processor: config.json's image_size
])
def test_sizes_are_the_processors_resize_and_crop(prep, image_size, expected):
    assert sizes(prep, image_size) == expected


@pytest.mark.parametrize("prep, image_size, says", [
    ({"size": {"height": 32, "width": 48}}, None, "32×48"),
    ({"size": {"longest_edge": 64}}, None, "neither a square size nor a shortest edge"),
    ({"size": 64, "do_center_crop": True, "crop_size": 80}, None, "crops 80 px"),
    ({"do_resize": True}, None, "gives no size"),
    (None, None, "no image_size"),
    (None, (32, 48), "32×48"),
])
def test_sizes_the_service_cannot_reproduce_are_refused(prep, image_size, says):
    with pytest.raises(UnsupportedModelError, match=says):
        sizes(prep, image_size)


def close(a, b) -> bool:
    return all(abs(x - y) < 1e-12 for x, y in zip(a, b, strict=True))


def test_normalization_folds_rescale_offset_and_include_top_into_mean_and_std():
    mean, std = normalization(PREP)
    assert close(mean, PREP["image_mean"]) and close(std, PREP["image_std"])
    # Pixels kept in 0..255 (no rescale): mean and std in those units.
    mean, std = normalization({**PREP, "do_rescale": False})
    assert close(mean, [m / 255 for m in PREP["image_mean"]])
    assert close(std, [s / 255 for s in PREP["image_std"]])
    # No normalization: a rescale by 1/127.5 is x / 0.5.
    mean, std = normalization({"do_normalize": False, "rescale_factor": 1 / 127.5})
    assert close(mean, [0, 0, 0]) and close(std, [0.5] * 3)
    # EfficientNet: x' = 2x − 1 (offset), (x' − m) / s, then / s once more (include_top):
    # x' − m = 2(x − (1 + m)/2), so mean (1 + m)/2 and std s²/2.
    eff = {"image_processor_type": "EfficientNetImageProcessor", "rescale_factor": 1 / 127.5,
           "rescale_offset": True, "include_top": True, "image_mean": 0.1, "image_std": 0.5}
    mean, std = normalization(eff)
    assert close(mean, [0.55] * 3) and close(std, [0.125] * 3)
    mean, std = normalization({**eff, "include_top": False, "rescale_offset": False})
    assert close(mean, [0.05] * 3) and close(std, [0.25] * 3)


@pytest.mark.parametrize("prep, says", [
    ({**PREP, "image_std": [0, 1, 1]}, "image_std must be positive"),
    ({**PREP, "image_mean": [0.5, 0.5]}, "image_mean must be a number or a list of 3"),
    ({**PREP, "rescale_factor": -1}, "rescale_factor must be positive"),
    ({k: v for k, v in PREP.items() if k != "image_std"}, "gives no image_mean or image_std"),
])
def test_malformed_normalization_is_refused(prep, says):
    with pytest.raises((UndecodableError, UnsupportedModelError), match=says):
        normalization(prep)


def test_a_spec_gets_classes_and_preprocessing_from_the_bundle():
    spec = parse_model_spec(spec_from_bundle({"name": "m", "architecture": "transformers"},
                                             bundle()))
    assert (spec.architecture, spec.num_classes) == ("transformers", 3)
    assert spec.class_names == ("cat", "dog", "eel")
    prep = spec.preprocessing
    assert (prep.input_size, prep.resize) == (40, 40)
    assert close(prep.mean, PREP["image_mean"]) and close(prep.std, PREP["image_std"])


def test_the_specs_own_fields_win():
    raw = {"name": "m", "architecture": "transformers", "num_classes": 3,
           "class_names": ["a", "b", "c"], "input_size": 32, "mean": [0, 0, 0],
           "std": [1, 1, 1]}
    spec = parse_model_spec(spec_from_bundle(raw, bundle()))
    assert spec.class_names == ("a", "b", "c")
    prep = spec.preprocessing
    assert (prep.input_size, prep.resize, prep.mean, prep.std) == (32, 32, (0, 0, 0), (1, 1, 1))
    # A processor the service cannot reproduce is no matter when the spec says it all.
    odd = {**PREP, "size": {"height": 32, "width": 48}}
    assert parse_model_spec(spec_from_bundle(raw, bundle(prep=odd))).preprocessing == prep


def test_without_a_processor_the_input_is_config_image_size_and_the_rest_defaults():
    spec = parse_model_spec(spec_from_bundle({"name": "m", "architecture": "transformers"},
                                             bundle(prep=None)))
    defaults = parse_model_spec({"name": "d", "architecture": "resnet18", "num_classes": 1})
    assert (spec.preprocessing.input_size, spec.preprocessing.resize) == (32, 32)
    assert spec.preprocessing.mean == defaults.preprocessing.mean


@pytest.mark.parametrize("raw, field", [
    ({"name": "m", "architecture": "resnet18"}, "architecture"),
    ({"name": "m"}, "architecture"),
    ({"name": "m", "architecture": "transformers", "num_classes": 4}, "num_classes"),
])
def test_a_spec_that_contradicts_its_bundle_is_refused(raw, field):
    with pytest.raises(SpecError, match=f"^{field}: "):
        spec_from_bundle(raw, bundle())


def test_a_spec_that_is_not_an_object_is_left_to_the_spec_parser():
    assert spec_from_bundle(["x"], bundle()) == ["x"]
