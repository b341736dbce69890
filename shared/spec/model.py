"""Model specs: the architecture (or an exported program), classes and preprocessing of a
registered model, and their validation (pure Python: the API validates without torch)."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import SpecError
from shared.jsonio import finite, integer

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_INPUT_SIZE = 1024
MAX_RESIZE = 2048
MAX_CLASSES = 100_000
TIMM_PREFIX = "timm:"
TRANSFORMERS = "transformers"  # a Hugging Face bundle's model (`shared.models.hfconfig`)


@functools.cache
def known_architectures() -> frozenset[str]:
    """torchvision classification models and `timm:<name>`, from `architectures.txt`."""
    text = Path(__file__).with_name("architectures.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes the model's input tensor."""

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: architecture (or an exported program), classes, preprocessing."""

    name: str
    num_classes: int
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # A torchvision name, "timm:<name>" or "transformers"; None for a .pt2 program.
    architecture: str | None = None
    class_names: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("preprocessing"))
        return out

    def class_name(self, index: int) -> str | None:
        if self.class_names is None or not 0 <= index < len(self.class_names):
            return None
        return self.class_names[index]

    def class_index(self, label: int | str) -> int | None:
        """A label given as an index or as a class name; None if the model has no such class."""
        if isinstance(label, int) and not isinstance(label, bool):
            return label if 0 <= label < self.num_classes else None
        if isinstance(label, str) and self.class_names:
            try:
                return self.class_names.index(label)
            except ValueError:
                return None
        return None


def _floats3(raw: Any, field_name: str) -> tuple[float, float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 3:
        raise SpecError(field_name, "must be a list of 3 numbers (one per RGB channel)")
    a, b, c = (finite(v, field_name) for v in raw)
    return (a, b, c)


def parse_model_spec(raw: Any, *, needs_architecture: bool = True) -> ModelSpec:
    """Validate a model registration spec; `needs_architecture` is False for a `.pt2` program."""
    if not isinstance(raw, dict):
        raise SpecError("spec", "must be a JSON object")
    allowed = {"name", "architecture", "num_classes", "input_size", "resize", "mean", "std",
               "class_names"}
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(sorted(map(str, unknown))[0],
                        f"is not a model spec field; known: {sorted(allowed)}")
    name = raw.get("name")
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise SpecError("name", "must match [a-z0-9][a-z0-9_.-]{0,63}")
    architecture = raw.get("architecture")
    if needs_architecture:
        if not isinstance(architecture, str) or not architecture:
            raise SpecError(
                "architecture", "is required: a torchvision model name, 'timm:<name>' or "
                f"{TRANSFORMERS!r}"
            )
        if architecture != TRANSFORMERS and architecture not in known_architectures():
            raise SpecError(
                "architecture",
                f"{architecture[:80]!r} is not a torchvision classification model, a timm "
                f"model ('timm:<name>') or {TRANSFORMERS!r}; see GET /v1/architectures",
            )
    elif architecture is not None:
        raise SpecError("architecture", "must be absent for an exported program (.pt2)")
    num_classes = integer(raw.get("num_classes"), "num_classes", 1, MAX_CLASSES)
    defaults = Preprocessing()
    input_size = integer(raw.get("input_size", defaults.input_size), "input_size", 8,
                         MAX_INPUT_SIZE)
    resize = integer(raw.get("resize", input_size), "resize", input_size, MAX_RESIZE)
    mean = _floats3(raw.get("mean", list(defaults.mean)), "mean")
    std = _floats3(raw.get("std", list(defaults.std)), "std")
    if any(s <= 0 for s in std):
        raise SpecError("std", "must be positive")
    class_names = raw.get("class_names")
    if class_names is not None:
        if not isinstance(class_names, (list, tuple)) or not all(
            isinstance(c, str) and len(c) <= 256 for c in class_names
        ):
            raise SpecError("class_names", "must be a list of strings (at most 256 characters)")
        if len(class_names) != num_classes:
            raise SpecError(
                "class_names", f"has {len(class_names)} names but num_classes is {num_classes}"
            )
        class_names = tuple(class_names)
    return ModelSpec(
        name=name,
        num_classes=num_classes,
        preprocessing=Preprocessing(input_size, resize, mean, std),
        architecture=architecture,
        class_names=class_names,
    )


def model_spec_from_json(raw: dict[str, Any]) -> ModelSpec:
    """Read back a spec that `ModelSpec.to_json` wrote (already validated when registered)."""
    return parse_model_spec(
        {k: v for k, v in raw.items() if v is not None},
        needs_architecture=raw.get("architecture") is not None,
    )
