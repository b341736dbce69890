"""The built-in models: data every tenant can use, known to the API without torch.

The API stores each one's record (`validating`) before it answers its first request, so a
first job on `efficientnet_lite0` never meets a 404; a worker then builds the artifact (see
`worker.models.builtin`), uploads it and validates the model like any other.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order (torchvision's list, kept as a file)."""
    text = Path(__file__).with_name("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


@dataclass(frozen=True)
class BuiltinModel:
    """A model every tenant can use: its registration spec and artifact format."""

    spec: dict[str, Any]
    format: str  # "safetensors" | "pt2"

    @property
    def name(self) -> str:
        return self.spec["name"]


EFFICIENTNET_LITE0_SPEC: dict[str, Any] = {
    "name": "efficientnet_lite0",
    "architecture": "timm:efficientnet_lite0",
    "num_classes": 1000,
    "input_size": 224,
    "resize": 256,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "class_names": list(imagenet_class_names()),
}

BUILTIN_MODELS: tuple[BuiltinModel, ...] = (BuiltinModel(EFFICIENTNET_LITE0_SPEC, "safetensors"),)
# Reserved: no tenant may register a model under one of these names.
BUILTIN_NAMES: frozenset[str] = frozenset(m.name for m in BUILTIN_MODELS)
