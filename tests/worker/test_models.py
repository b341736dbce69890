"""Models from local files only: safetensors, weights-only state dicts, exported programs."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from attribution_refs import reference_maps
from captum_refs import captum_guided_gradcam
from engine_testing import seeded_architecture
from PIL import Image
from safetensors.torch import save_file
from toy_patterns import TinyCNN

from shared.errors import InputError
from shared.spec.model import ModelSpec, Preprocessing
from shared.spec.targets import ClassTarget
from worker.engine.core import Engine
from worker.jobs.model_cache import ModelCache
from worker.models.build import build_model, display_image, preprocess_image, read_state_dict

SPEC = ModelSpec(name="r18", num_classes=4, architecture="resnet18")


@pytest.fixture(scope="module")
def resnet18():
    return seeded_architecture("resnet18")


def _outputs(model, seed=0):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def test_safetensors_round_trip(resnet18, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(resnet18.state_dict(), str(path))
    built = build_model(SPEC, path)
    assert torch.equal(_outputs(built), _outputs(resnet18))


def test_state_dict_round_trip_with_torch_save(resnet18, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(resnet18.state_dict(), path)
    assert torch.equal(_outputs(build_model(SPEC, path)), _outputs(resnet18))


def test_weights_with_a_wrong_shape_are_refused_by_key(resnet18, tmp_path):
    state = dict(resnet18.state_dict())
    state["fc.weight"] = torch.zeros(5, 512)
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(InputError, match=r"wrong shape: fc\.weight \[5, 512\]"):
        build_model(SPEC, path)


def test_weights_with_a_missing_key_are_refused_by_key(resnet18, tmp_path):
    state = dict(resnet18.state_dict())
    del state["layer2.0.conv1.weight"]
    path = tmp_path / "missing.safetensors"
    save_file(state, str(path))
    with pytest.raises(InputError, match=r"missing: layer2\.0\.conv1\.weight"):
        build_model(SPEC, path)


def test_unknown_architecture_is_refused(tmp_path):
    spec = ModelSpec(name="x", num_classes=4, architecture="resnet19")
    with pytest.raises(InputError, match="'resnet19' is not a torchvision"):
        build_model(spec, tmp_path / "none.safetensors")


class _Payload:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_torch_load_refuses_arbitrary_objects(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "extra": _Payload(marker)}, path)
    with pytest.raises(InputError, match="not a plain tensor state dict"):
        read_state_dict(path)
    assert not marker.exists()


def test_unreadable_safetensors_is_input_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(InputError, match="safetensors"):
        read_state_dict(path)


def test_exported_program_loads_as_its_module_tree_and_attributes_with_full_coverage(tmp_path):
    torch.manual_seed(0)
    model = TinyCNN(num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    path = tmp_path / "tiny.pt2"
    # A dynamic batch dimension: the engine runs passes of any number of rows.
    batch = {"x": {0: torch.export.Dim("batch")}}
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=batch), str(path))
    program = build_model(ModelSpec(name="tiny", num_classes=3), path)
    # Unflattened: the eager model's modules, by name and class name, each one called.
    assert [(n, type(m).__name__) for n, m in program.named_modules() if n] == [
        (n, type(m).__name__) for n, m in model.named_modules() if n]

    engine = Engine(program)
    assert engine.default_layer(x[:1]) == Engine(model).default_layer(x[:1]) == "conv3"
    methods = ("gradient", "guided_backprop", "deconvnet", "guided_gradcam")
    result = engine.attribute(x, methods=methods, targets=ClassTarget(1))
    for m, method in enumerate(methods):
        assert result.coverage[m].relu_calls == result.coverage[m].overridden == 4
        if method == "guided_gradcam":
            expected = captum_guided_gradcam(model, model.conv3, x, [1, 1])
        else:
            expected, _ = reference_maps(method, model, x, [1, 1])  # the eager model, patched
        got = np.stack([image.maps[m].values for image in result.images])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_unloadable_program_is_input_error(tmp_path):
    path = tmp_path / "junk.pt2"
    path.write_bytes(b"PK not a zip")
    with pytest.raises(InputError, match="torch.export"):
        build_model(ModelSpec(name="junk", num_classes=3), path)


PREP = Preprocessing(input_size=24, resize=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def test_preprocess_resizes_the_short_side_and_crops_the_centre():
    image = Image.new("RGB", (120, 80), (200, 100, 50))
    x = preprocess_image(image, PREP)
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    expected = (np.array([200, 100, 50]) / 255 - np.array(PREP.mean)) / np.array(PREP.std)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)


def test_preprocess_accepts_grey_and_rgba():
    assert preprocess_image(Image.new("L", (40, 50), 9), PREP).shape == (3, 24, 24)
    assert preprocess_image(Image.new("RGBA", (50, 40)), PREP).shape == (3, 24, 24)


def test_display_image_inverts_the_normalization():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    prep = Preprocessing(input_size=24, resize=24, mean=PREP.mean, std=PREP.std)
    x = preprocess_image(Image.fromarray(pixels), prep)  # no resampling at this size
    shown = display_image(x, prep)
    assert shown.dtype == np.uint8 and shown.shape == (24, 24, 3)
    assert np.abs(shown.astype(int) - pixels.astype(int)).max() <= 1


def test_model_cache_is_lru_and_loads_once():
    loads = []

    def loader(n):
        def load():
            loads.append(n)
            return torch.nn.Linear(2, n)
        return load

    cache = ModelCache(capacity=2)
    first = cache.get("a", loader(1))
    assert cache.get("a", loader(9)) is first
    cache.get("b", loader(2))
    cache.get("a", loader(9))  # "a" is now the most recent
    cache.get("c", loader(3))  # evicts "b"
    assert len(cache) == 2
    cache.get("b", loader(2))
    assert loads == [1, 2, 3, 2]
