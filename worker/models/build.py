"""Building registered models from local files, and their preprocessing.

Weights are data: safetensors, or a state dict read with `torch.load(weights_only=True)`;
never an arbitrary pickle. A Hugging Face bundle is configs and safetensors
(`worker.models.hugging_face`). An exported program (`.pt2`) is a graph of tensor operations,
loaded with `torch.export.load` only after the archive is checked to need no unpickling
(`worker.models.programs`). Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as TF

from shared.errors import InputError
from shared.settings import Settings
from shared.spec.model import TIMM_PREFIX, TRANSFORMERS, ModelSpec, Preprocessing
from worker.models.programs import load_program

# torchvision builders that would otherwise warn about their default initialisation; the
# initialisation is overwritten by the loaded weights anyway.
_SKIP_INIT = {"googlenet", "inception_v3"}


def build_architecture(architecture: str, num_classes: int) -> nn.Module:
    """An untrained torchvision (`resnet18`) or timm (`timm:efficientnet_lite0`) classifier."""
    if architecture.startswith(TIMM_PREFIX):
        import timm

        name = architecture[len(TIMM_PREFIX):]
        if name not in timm.list_models():
            raise InputError(f"architecture: timm has no model named {name!r}")
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if architecture not in known:
        raise InputError(
            f"architecture: {architecture!r} is not a torchvision classification model; "
            f"known: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, object] = {"weights": None, "num_classes": num_classes}
    if architecture in _SKIP_INIT:
        kwargs["init_weights"] = False
    return torchvision.models.get_model(architecture, **kwargs)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a `.safetensors` file, or from a state dict saved with `torch.save`."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as exc:
            raise InputError(f"weights: not a readable safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a variety of errors for a bad or unsafe file
        raise InputError(f"weights: not a plain tensor state dict ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("weights: the file holds no flat {name: tensor} state dict")
    return state


def check_fit(expected: dict[str, list[int]], given: dict[str, list[int]],
              architecture: str) -> None:
    """Refuse weights whose tensor names or shapes differ from the architecture's, naming them."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(f"{k} {given[k]} (expected {expected[k]})"
                   for k in set(given) & set(expected) if given[k] != expected[k])
    if missing or unexpected or wrong:
        problems = [
            f"{label}: {', '.join(names[:5])}" + (" ..." if len(names) > 5 else "")
            for label, names in (("missing", missing), ("unexpected", unexpected),
                                 ("wrong shape", wrong))
            if names
        ]
        raise InputError(
            f"weights do not fit architecture {architecture!r}: " + "; ".join(problems)
        )


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in tensors.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], architecture: str) -> None:
    """Load `state` into `model` strictly, naming what does not fit."""
    check_fit(_shapes(model.state_dict()), _shapes(state), architecture)
    model.load_state_dict(state, strict=True)


def check_weight_shapes(spec: ModelSpec, artifact: Path) -> None:
    """Compare the weights file's header with the architecture built on the meta device,
    which allocates nothing: weights that do not fit are refused before any real tensor is
    made (a 10-byte file cannot make the worker build a 1.7 GB classifier)."""
    from safetensors import SafetensorError, safe_open

    with torch.device("meta"):
        expected = build_architecture(spec.architecture, spec.num_classes).state_dict()
    try:
        with safe_open(str(artifact), framework="pt") as f:
            shapes = {name: list(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise InputError(f"weights: not a readable safetensors file ({exc})") from None
    check_fit(_shapes(expected), shapes, spec.architecture)


def build_model(spec: ModelSpec, artifact: Path, *,
                max_bytes: int = Settings.max_model_bytes) -> nn.Module:
    """The model a spec describes, from its weights file, its Hugging Face bundle (whose
    members may hold at most `max_bytes`) or its exported program."""
    if spec.architecture is None:
        return load_program(artifact)
    if spec.architecture == TRANSFORMERS:
        from worker.models.hugging_face import build_transformers

        return build_transformers(artifact, max_bytes)
    if artifact.suffix == ".safetensors":
        check_weight_shapes(spec, artifact)
    model = build_architecture(spec.architecture, spec.num_classes)
    load_weights(model, read_state_dict(artifact), spec.architecture)
    return model


def preprocess_image(image: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """Resize the shorter side, centre-crop and normalize: the model's float32 C×H×W input."""
    tensor = TF.pil_to_tensor(image.convert("RGB"))
    tensor = TF.resize(tensor, [prep.resize], antialias=True)
    tensor = TF.center_crop(tensor, [prep.input_size, prep.input_size])
    tensor = TF.to_dtype(tensor, torch.float32, scale=True)
    return TF.normalize(tensor, list(prep.mean), list(prep.std))


def display_image(x: torch.Tensor | np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Undo the normalization of a C×H×W input: a uint8 H×W×3 picture to overlay maps on."""
    arr = np.asarray(x, dtype=np.float32)
    mean = np.asarray(prep.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[:, None, None]
    rgb = np.clip(arr * std + mean, 0.0, 1.0)
    if rgb.shape[0] == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    return (rgb[:3].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
