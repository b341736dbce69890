"""Hugging Face bundles on the worker: each model type builds from a tiny config, loads
strictly from what `save_pretrained` wrote, and computes the transformers model's logits
under its own module names, with eager attention, without touching the network; weights that
do not fit and configs asking for code are refused; the preprocessing the API derives from a
processor's config gives the pixels transformers' own processor gives."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_bundles import CLASSES, save, tiny_model, zipped
from PIL import Image

from shared.errors import InputError, UnsupportedModelError
from shared.models.bundles import read_bundle
from shared.models.hfconfig import MODEL_TYPES, spec_from_bundle
from shared.spec.model import parse_model_spec
from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.models.build import build_model, preprocess_image
from worker.models.hugging_face import HFClassifier

LIMIT = 1 << 30


def bundle_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.bundle"
    path.write_bytes(data)
    return path


def spec_of(path: Path, **fields):
    with path.open("rb") as f:
        bundle = read_bundle(f, LIMIT)
    raw = {"name": "m", "architecture": "transformers", **fields}
    return parse_model_spec(spec_from_bundle(raw, bundle))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_each_model_type_builds_and_loads_strictly_under_its_own_names(model_type, tmp_path,
                                                                       no_network):
    reference = tiny_model(model_type)
    path = bundle_file(tmp_path, zipped(save(reference, tmp_path / "saved")))
    spec = spec_of(path, input_size=32)
    assert (spec.num_classes, spec.class_names) == (3, CLASSES)

    model = build_model(spec, path)
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert isinstance(model, HFClassifier) and not model.training
    assert model.hf.config._attn_implementation == "eager"
    assert [n for n, _ in model.named_modules()][1:] == [
        n for n, _ in reference.named_modules()][1:]
    got, want = model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)
    assert {v.dtype for v in got.values() if v.is_floating_point()} == {torch.float32}
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x).logits, atol=1e-6)


def test_the_engine_attributes_the_logits_on_a_private_copy(tmp_path):
    reference = tiny_model("vit")
    path = bundle_file(tmp_path, zipped(save(reference, tmp_path / "saved")))
    model = build_model(spec_of(path), path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = Engine(model)
    assert engine.model is not model and engine.model.hf is not model.hf
    # The copy's transformers model runs the copy's modules, which hooks on its names reach.
    assert engine.model.hf.vit is engine.model.vit
    assert engine.model.hf.classifier is engine.model.classifier
    assert [n for n, _ in engine.model.named_modules()] == [n for n, _ in model.named_modules()]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = engine.attribute(x, ["gradient"], ClassTarget(1))
    inputs = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference(inputs).logits[:, 1].sum(), inputs)
    for i, image in enumerate(result.images):
        np.testing.assert_allclose(image.maps[0].values, expected[i].numpy(), rtol=1e-5,
                                   atol=1e-7)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _edited(tmp_path: Path, edit) -> Path:
    """A ViT bundle whose weights file `edit` changed (a dict of tensors in, out)."""
    from safetensors.torch import load_file, save_file

    folder = save(tiny_model("vit"), tmp_path / "saved")
    tensors = load_file(folder / "model.safetensors")
    save_file(edit(tensors), folder / "model.safetensors")
    return bundle_file(tmp_path, zipped(folder))


def _renamed(tensors):
    name = next(k for k in tensors if k.endswith("key.weight"))
    return {**{k: v for k, v in tensors.items() if k != name}, "evil.weight": tensors[name]}


def _transposed(tensors):
    name = next(k for k in tensors if k.endswith("intermediate.dense.weight"))
    return {**tensors, name: tensors[name].t().contiguous()}


@pytest.mark.parametrize("edit, says", [
    (lambda t: {k: v for k, v in t.items() if not k.endswith("classifier.bias")},
     "holds 24,000 values but the model config.json describes has 24,003"),
    (lambda t: {**t, "extra": torch.zeros(7)}, "values but the model"),
    (_renamed, "missing: vit.layers.0.attention.k_proj.weight; unexpected: evil.weight"),
    (_transposed, "does not fit the model config.json describes"),
])
def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, edit, says):
    path = _edited(tmp_path, edit)
    with pytest.raises(InputError, match=says):
        build_model(spec_of(path), path)


def _with_config(tmp_path: Path, **changes) -> Path:
    folder = save(tiny_model("vit"), tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return bundle_file(tmp_path, zipped(folder))


def test_a_bundle_whose_config_describes_a_bigger_model_is_refused_before_building(
        tmp_path, monkeypatch):
    """A 300M-parameter config beside a 24,003-value weights file: refused from the meta
    device's count, before the model is built (`from_pretrained` would allocate it)."""
    from transformers import ViTForImageClassification

    def build(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(ViTForImageClassification, "from_pretrained", build)
    path = _with_config(tmp_path, hidden_size=4096, intermediate_size=16384)
    with pytest.raises(InputError, match="holds 24,003 values"):
        build_model(spec_of(path), path)


@pytest.mark.parametrize("changes", [{"hidden_size": "32"}, {"hidden_act": "evil"},
                                     {"intermediate_size": -5}])
def test_a_config_transformers_cannot_build_is_bad_input(tmp_path, changes):
    path = _with_config(tmp_path, **changes)
    with pytest.raises(InputError, match="config.json does not describe a model transformers "
                                         "can build"):
        build_model(spec_of(path), path)


def test_a_config_choosing_attention_or_dtype_runs_eager_in_float32(tmp_path):
    path = _with_config(tmp_path, attn_implementation="flash_attention_2", dtype="bfloat16",
                        _attn_implementation="sdpa")
    model = build_model(spec_of(path), path)
    assert model.hf.config._attn_implementation == "eager"
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_the_worker_refuses_a_config_asking_for_code_on_its_own(tmp_path):
    """Defence in depth: the API refuses such a bundle; the worker checks it again."""
    path = _with_config(tmp_path, auto_map={"AutoModelForImageClassification": "evil.Model"})
    spec = parse_model_spec({"name": "m", "architecture": "transformers", "num_classes": 3,
                             "input_size": 32})
    with pytest.raises(UnsupportedModelError, match="auto_map"):
        build_model(spec, path)


def _processors():
    from transformers import (
        BeitImageProcessor,
        ConvNextImageProcessor,
        DeiTImageProcessor,
        EfficientNetImageProcessor,
        ViTImageProcessor,
    )

    bilinear = {"resample": Image.Resampling.BILINEAR}
    return {
        "vit": ViTImageProcessor(size={"height": 40, "width": 40}, **bilinear),
        "vit-no-rescale": ViTImageProcessor(size={"height": 40, "width": 40}, do_rescale=False,
                                            image_std=[60.0, 50.0, 70.0],
                                            image_mean=[100.0, 110.0, 120.0], **bilinear),
        "deit": DeiTImageProcessor(size={"height": 48, "width": 48},
                                   crop_size={"height": 40, "width": 40}, **bilinear),
        "beit": BeitImageProcessor(size={"height": 40, "width": 40}, **bilinear),
        "convnext": ConvNextImageProcessor(size={"shortest_edge": 40}, crop_pct=0.8, **bilinear),
        "convnext-warped": ConvNextImageProcessor(size={"shortest_edge": 384}, **bilinear),
        "efficientnet": EfficientNetImageProcessor(size={"height": 40, "width": 40},
                                                   image_std=[0.3, 0.4, 0.5], **bilinear),
        "efficientnet-offset": EfficientNetImageProcessor(
            size={"height": 40, "width": 40}, rescale_factor=1 / 127.5, rescale_offset=True,
            include_top=False, **bilinear),
    }


@pytest.mark.parametrize("name", ["vit", "vit-no-rescale", "deit", "beit", "convnext",
                                  "convnext-warped", "efficientnet", "efficientnet-offset"])
def test_the_preprocessing_gives_transformers_processors_pixels(name, tmp_path):
    """On a square picture of noise, the pixels of transformers' own processor (set to
    bilinear resampling, the service's): sizes, crop, rescale and normalization all agree."""
    processor = _processors()[name]
    folder = save(tiny_model("resnet"), tmp_path / "saved", processor)
    spec = spec_of(bundle_file(tmp_path, zipped(folder)))
    noise = np.random.default_rng(0).integers(0, 256, (70, 70, 3), dtype=np.uint8)
    picture = Image.fromarray(noise, "RGB")
    want = processor(picture, return_tensors="pt")["pixel_values"][0]
    got = preprocess_image(picture, spec.preprocessing)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())
