"""What a Hugging Face bundle says about its model, read without torch or transformers: the
model type, the classes (`id2label`) and the preprocessing (`preprocessor_config.json`).

A config that asks for code of its own (`auto_map`, `trust_remote_code`, custom pipelines)
or for quantization is refused: a bundle is data, and only the model types in
`MODEL_TYPES` are built, by transformers' own classes. The spec of a registration gets
`num_classes`, `class_names` and the preprocessing from the bundle for every field it
leaves out (`spec_from_bundle`).
"""

from __future__ import annotations

import math
from typing import Any

from shared.errors import SpecError, UndecodableError, UnsupportedModelError
from shared.models.bundles import Bundle
from shared.models.hfpreprocessing import normalization, sizes
from shared.spec.model import MAX_CLASSES, MAX_INPUT_SIZE, TRANSFORMERS

MODEL_TYPES = ("beit", "convnext", "deit", "efficientnet", "resnet", "swin", "vit")
# Keys that make transformers load code, or modules, beyond the model type's own classes.
CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines", "quantization_config")
DEFAULT_LABELS = 2  # transformers' `num_labels` when a config gives neither it nor id2label
# Bounds on what a config may make the worker build and run before its weights are checked
# (a few bytes of JSON could otherwise ask for a million layers, or for global attention
# over a million tokens): far above every published model of these types.
MAX_LAYERS = 1000
MAX_TOKENS = 64 * 64
GLOBAL_ATTENTION = ("beit", "deit", "vit")
EFFICIENTNET_REPEATS = (1, 2, 2, 3, 3, 4, 1)
MAX_CLASS_NAME = 256


def _find_code_key(value: Any, path: str = "") -> str | None:
    """The first key of `CODE_KEYS`, at any depth of the config (a dotted path), or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if key in CODE_KEYS:
                return here
            found = _find_code_key(item, here)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_code_key(item, f"{path}[{i}]")
            if found:
                return found
    return None


def check_config(config: dict[str, Any]) -> str:
    """The config's `model_type`, once it is one that is built here and asks for no code."""
    key = _find_code_key(config)
    if key is not None:
        raise UnsupportedModelError(
            f"bundle: config.json sets {key!r}: models with code of their own (remote code, "
            "custom classes or pipelines) or quantized models are not accepted; save a model "
            "of a transformers model type with save_pretrained")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        found = "has no model_type" if model_type is None else (
            f"has model_type {str(model_type)[:80]!r}")
        raise UnsupportedModelError(f"bundle: config.json {found}; the model types accepted "
                                    f"are {', '.join(MODEL_TYPES)}")
    check_scale(config)
    architectures = config.get("architectures")
    if architectures is not None and not (
            isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        raise UndecodableError("bundle: config.json's architectures must be a list of names")
    return model_type


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UndecodableError(f"bundle: config.json's {what} must be a positive integer")
    return value


def config_size(value: Any, what: str) -> tuple[int, int]:
    """A size in config.json: one integer, or [height, width]."""
    if isinstance(value, list) and len(value) == 2:
        return _count(value[0], what), _count(value[1], what)
    return _count(value, what), _count(value, what)


def _counts(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        raise UndecodableError(f"bundle: config.json's {what} must be a list of counts")
    return [_count(v, what) for v in value]


def check_scale(config: dict[str, Any]) -> None:
    """Refuse a config whose model would have more than `MAX_LAYERS` blocks, or attend over
    more than `MAX_TOKENS` tokens (patches of its `image_size`, or a Swin window)."""
    layers = 0
    if "num_hidden_layers" in config:
        layers += _count(config["num_hidden_layers"], "num_hidden_layers")
    if "depths" in config:
        layers += sum(_counts(config["depths"], "depths"))
    if config["model_type"] == "efficientnet":
        repeats = _counts(config.get("num_block_repeats", list(EFFICIENTNET_REPEATS)),
                          "num_block_repeats")
        factor = config.get("depth_coefficient", 1.0)
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
            raise UndecodableError("bundle: config.json's depth_coefficient must be positive")
        layers += math.ceil(factor * sum(repeats))
    if layers > MAX_LAYERS:
        raise UnsupportedModelError(f"bundle: config.json describes {layers} layers or blocks, "
                                    f"more than {MAX_LAYERS}")
    if config["model_type"] in GLOBAL_ATTENTION:
        height, width = config_size(config.get("image_size", 224), "image_size")
        patch_h, patch_w = config_size(config.get("patch_size", 16), "patch_size")
        tokens = (height // patch_h) * (width // patch_w)
        if tokens > MAX_TOKENS:
            raise UnsupportedModelError(
                f"bundle: config.json's image_size in patches of its patch_size is {tokens} "
                f"tokens, more than {MAX_TOKENS}")
    if config["model_type"] == "swin" and _count(config.get("window_size", 7),
                                                 "window_size") ** 2 > MAX_TOKENS:
        raise UnsupportedModelError(f"bundle: config.json's window_size attends over more "
                                    f"than {MAX_TOKENS} tokens")


def labels(config: dict[str, Any]) -> tuple[int, tuple[str, ...] | None]:
    """The number of classes (`num_labels`, else id2label's size, else transformers'
    default) and their names from `id2label` (None if the config has none)."""
    raw = config.get("id2label")
    count = config.get("num_labels")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                              or not 1 <= count <= MAX_CLASSES):
        raise UndecodableError(f"bundle: config.json's num_labels must be 1 to {MAX_CLASSES}")
    if raw is None:
        return count or DEFAULT_LABELS, None
    if not isinstance(raw, dict) or not 1 <= len(raw) <= MAX_CLASSES:
        raise UndecodableError(f"bundle: config.json's id2label must map 1 to {MAX_CLASSES} "
                               "class indices to names")
    if count is not None and count != len(raw):
        raise UndecodableError(f"bundle: config.json says num_labels {count} but id2label "
                               f"names {len(raw)} classes")
    names = []
    for index in range(len(raw)):
        name = raw.get(str(index))
        if not isinstance(name, str) or len(name) > MAX_CLASS_NAME:
            raise UndecodableError(
                f"bundle: config.json's id2label must name every class 0 to {len(raw) - 1} "
                f"with a string of at most {MAX_CLASS_NAME} characters (class {index})")
        names.append(name)
    return len(raw), tuple(names)


def spec_from_bundle(raw: Any, bundle: Bundle) -> Any:
    """The registration spec with what the bundle says filled in for the fields it leaves
    out: `num_classes` and `class_names` from config.json, `input_size`, `resize`, `mean`
    and `std` from preprocessor_config.json (or config.json's image_size). A spec that is
    not an object is returned as it is, for `parse_model_spec` to refuse."""
    if not isinstance(raw, dict):
        return raw
    if raw.get("architecture") != TRANSFORMERS:
        raise SpecError("architecture", f"must be {TRANSFORMERS!r} for a model registered "
                                        "with a file part 'bundle'")
    check_config(bundle.config)
    count, names = labels(bundle.config)
    spec = dict(raw)
    if spec.setdefault("num_classes", count) != count:
        raise SpecError("num_classes", f"is {raw['num_classes']!r} but the bundle's "
                                       f"config.json has {count} classes; leave it out")
    if names is not None and "class_names" not in raw:
        spec["class_names"] = list(names)
    if "input_size" not in raw:
        image_size = bundle.config.get("image_size")
        input_size, resize = sizes(bundle.preprocessor, None if image_size is None else
                                   config_size(image_size, "image_size"))
        if input_size > MAX_INPUT_SIZE:
            raise UnsupportedModelError(
                f"bundle: its input size {input_size} is over {MAX_INPUT_SIZE}; give "
                "input_size in the spec")
        spec["input_size"] = input_size
        spec.setdefault("resize", resize)
    if bundle.preprocessor is not None and not {"mean", "std"} <= set(raw):
        mean, std = normalization(bundle.preprocessor)
        spec.setdefault("mean", list(mean))
        spec.setdefault("std", list(std))
    return spec
