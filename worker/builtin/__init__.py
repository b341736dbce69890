"""The built-in models: registered for every tenant when the worker starts.

`python -m worker` passes `BUILTIN_MODELS` to `shared.registry.register_builtin_models` (in a
spawned child, when `settings.builtin_models` is true). Importing this package is cheap and
torch-free; an entry's `artifact()` builds its file and may import torch. Converted files are
cached under `$SALIENCY_DATA_DIR/cache/builtin/`, so the conversion runs once per machine.
"""

from __future__ import annotations

import functools
from pathlib import Path

from shared.registry import BuiltinModel
from shared.settings import Settings
from worker.builtin import efficientnet_lite0

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order (torchvision's list, kept as a file)."""
    text = (Path(__file__).parent / "imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def cache_dir(settings: Settings | None = None) -> Path:
    settings = settings or Settings.from_env()
    return Path(settings.data_dir, "cache", "builtin").absolute()


def efficientnet_lite0_artifact() -> Path:
    """The converted EfficientNet-Lite0 safetensors file (converted on first use)."""
    return efficientnet_lite0.artifact(cache_dir())


EFFICIENTNET_LITE0_SPEC = {
    "name": "efficientnet_lite0",
    "architecture": efficientnet_lite0.ARCHITECTURE,
    "num_classes": 1000,
    "input_size": 224,
    "resize": 256,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "class_names": list(imagenet_class_names()),
}

BUILTIN_MODELS: tuple[BuiltinModel, ...] = (
    BuiltinModel(EFFICIENTNET_LITE0_SPEC, "safetensors", efficientnet_lite0_artifact),
)
