"""Hugging Face image classifiers from a bundle (`shared.models.bundles`): built by transformers'
own classes from config.json, loaded strictly from model.safetensors, nothing downloaded.

The model's class is what `AutoModelForImageClassification.from_config` builds from the
config (never remote code: `shared.models.hfconfig.check_config` refuses configs that ask for any;
never a hub id), with eager attention so that attention probabilities are computed as
tensors a hook can see, in float32. Its size is compared with the weights' on the meta
device first, so weights that do not fit are refused before anything is allocated.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from shared.errors import InputError
from shared.models.bundles import read_bundle
from shared.models.hfconfig import check_config
from worker.models.offline import hf_offline

# Config keys that choose how the model runs: the engine's choice (eager attention, so that
# attention probabilities are tensors, in float32) stands.
RUN_KEYS = ("attn_implementation", "_attn_implementation", "experts_implementation",
            "_experts_implementation", "dtype", "torch_dtype")


class HFClassifier(nn.Module):
    """A transformers classifier whose forward returns its logits (N×classes), as every
    method of the engine expects.

    The classifier's top-level modules are registered on this module under their own names,
    so layer names are the transformers model's own (`vit.layers.11.layernorm_before`,
    `classifier`) and so are the state dict's keys; the transformers model itself is kept
    outside the module tree, so that no module is listed twice.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "hf", model)
        for name, child in model.named_children():
            self.add_module(name, child)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=pixel_values).logits

    def train(self, mode: bool = True) -> HFClassifier:
        self.hf.train(mode)  # the transformers model's own flag, and its modules'
        self.training = mode
        return self


def _skeleton(raw: dict):
    """transformers' config object of a checked config.json, read as `from_pretrained`
    reads one but for the keys that choose how the model runs, and the model built from it
    on the meta device; an `InputError` if transformers cannot build it."""
    hf_offline()
    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING, AutoModelForImageClassification

    try:
        config = CONFIG_MAPPING[raw["model_type"]].from_dict(
            {k: v for k, v in raw.items() if k not in RUN_KEYS})
        if config.architectures is None:
            config.architectures = []  # transformers picks the model type's first class then
        with torch.device("meta"):
            skeleton = AutoModelForImageClassification.from_config(
                config, attn_implementation="eager")
    except (StrictDataclassError, TypeError, ValueError, KeyError, AttributeError, IndexError,
            ZeroDivisionError, RuntimeError, ImportError) as exc:
        raise InputError(f"bundle: config.json does not describe a model transformers can "
                         f"build ({type(exc).__name__}: {str(exc)[:300]})") from None
    return config, skeleton


def _check_size(model: nn.Module, header: dict) -> None:
    """Refuse weights that hold fewer or more values than the model the config describes
    (`model` is built on the meta device), before a real tensor is made: a small file
    cannot make the worker build a large model."""
    expected = sum(t.numel() for t in model.state_dict().values())
    given = sum(math.prod(entry["shape"]) for name, entry in header.items()
                if name != "__metadata__")
    if given != expected:
        raise InputError(f"bundle: model.safetensors holds {given:,} values but the model "
                         f"config.json describes has {expected:,}; save both with "
                         "save_pretrained from one model")


def _check_loaded(info: dict) -> None:
    """Refuse a load that left a tensor out, took one the model has no place for, or one
    of another shape, naming them (transformers would initialise or skip them)."""
    problems = [
        f"{label}: {', '.join(sorted(map(str, info.get(key) or ()))[:5])}"
        for key, label in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"),
                           ("mismatched_keys", "wrong shape"), ("error_msgs", "errors"))
        if info.get(key)
    ]
    if problems:
        raise InputError("bundle: model.safetensors does not fit the model config.json "
                         "describes: " + "; ".join(problems))


def build_transformers(artifact: Path, max_bytes: int) -> nn.Module:
    """The bundle's classifier, with eager attention, in float32, its weights loaded
    strictly: the model's class comes from `AutoModelForImageClassification.from_config`,
    and its `from_pretrained` reads the state dict in memory (no path, no hub id), so the
    checkpoint's names are converted as transformers converts them (`save_pretrained` writes
    some under their older names), and every tensor must find its place."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    with artifact.open("rb") as f:
        bundle = read_bundle(f, max_bytes, weights=True)
    check_config(bundle.config)
    config, skeleton = _skeleton(bundle.config)
    _check_size(skeleton, bundle.header)
    try:
        state = load_safetensors(bundle.weights)
    except SafetensorError as exc:
        raise InputError(f"bundle: model.safetensors is not readable ({exc})") from None
    try:
        model, info = type(skeleton).from_pretrained(
            None, config=config, state_dict=state, output_loading_info=True,
            attn_implementation="eager", dtype=torch.float32)
    except RuntimeError as exc:  # tensors of another shape than the model's
        raise InputError(f"bundle: model.safetensors does not fit the model config.json "
                         f"describes ({str(exc)[:500]})") from None
    _check_loaded(info)
    return HFClassifier(model).eval()
