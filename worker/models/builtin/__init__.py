"""The built-in models' artifacts: how a worker produces each one's file (may import torch).

The models themselves (their specs) are data in `shared.models.builtin`. Converted files are
cached under `$SALIENCY_DATA_DIR/cache/builtin/`, so a conversion runs once per machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared.models.builtin import BUILTIN_MODELS, EFFICIENTNET_LITE0_SPEC, imagenet_class_names
from shared.settings import Settings
from worker.models.builtin import efficientnet_lite0

__all__ = ["ARTIFACTS", "BUILTIN_MODELS", "EFFICIENTNET_LITE0_SPEC", "imagenet_class_names",
           "cache_dir"]


def cache_dir(settings: Settings | None = None) -> Path:
    settings = settings or Settings.from_env()
    return Path(settings.data_dir, "cache", "builtin").absolute()


def efficientnet_lite0_artifact(settings: Settings | None = None) -> Path:
    """The converted EfficientNet-Lite0 safetensors file (converted on first use)."""
    return efficientnet_lite0.artifact(cache_dir(settings))


ARTIFACTS: dict[str, Callable[[Settings | None], Path]] = {
    "efficientnet_lite0": efficientnet_lite0_artifact,
}
assert set(ARTIFACTS) == {m.name for m in BUILTIN_MODELS}, "every built-in needs its artifact"
