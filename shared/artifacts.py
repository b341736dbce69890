"""Model artifacts checked by their container alone, without torch: a safetensors header, or a
`torch.export` archive that loads without any pickle.

A `.pt2` archive can carry pickled weights, constants and objects that `torch.export.load`
would unpickle (running code); an archive that needs any of them is refused. The worker
completes the check with torch (the sample inputs must load with `weights_only=True`).
"""

from __future__ import annotations

import json
import struct
import zipfile
from typing import IO, Any

from shared.errors import SpecError, UndecodableError
from shared.jsonio import loads

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
SAFE_CONSTANT_PREFIX = "tensor_"


def safetensors_header(head: bytes, size: int) -> dict[str, Any]:
    """The header (tensor name -> dtype, shape, offsets) from the first bytes of a file of
    `size` bytes; `head` must hold at least the header."""
    if size < 8 or len(head) < 8:
        raise UndecodableError("weights: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > min(size - 8, MAX_SAFETENSORS_HEADER):
        raise UndecodableError("weights: not a safetensors file (header longer than the file)")
    if len(head) < 8 + n:
        raise ValueError("the head given is shorter than the header")
    try:
        header = loads(head[8 : 8 + n], "weights")
    except SpecError as e:
        raise UndecodableError(f"weights: not a safetensors file ({e.message})") from None
    if not isinstance(header, dict):
        raise UndecodableError("weights: not a safetensors file (header is not an object)")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if (not isinstance(entry, dict) or not isinstance(entry.get("shape"), list)
                or not all(isinstance(d, int) and d >= 0 for d in entry["shape"])):
            raise UndecodableError(f"weights: tensor {name[:80]!r} has no valid shape")
    return header


def header_length(head: bytes) -> int:
    """How many bytes the safetensors header takes, from its first 8 bytes."""
    return 8 + struct.unpack("<Q", head[:8])[0]


def _configs(archive: zipfile.ZipFile) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in archive.namelist():
        if name.endswith("_weights_config.json") or name.endswith("_constants_config.json"):
            try:
                config = json.loads(archive.read(name))
            except ValueError as e:
                raise UndecodableError(f"program: {name} is not JSON ({e})") from None
            out.append((name, config.get("config", {}) if isinstance(config, dict) else {}))
    return out


def check_pt2(stream: IO[bytes]) -> None:
    """Refuse a `.pt2` archive that is not a zip of an exported program, or that would make
    `torch.export.load` unpickle anything (pickled weights or constants, custom or opaque
    objects, legacy `.pt` payloads, compiled AOTInductor code)."""
    try:
        archive = zipfile.ZipFile(stream)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UndecodableError(f"program: not a torch.export .pt2 archive ({e})") from None
    with archive:
        if not any("/models/" in f"/{n}" and n.endswith(".json") for n in names):
            raise UndecodableError("program: not a torch.export .pt2 archive (no models/)")
        for name in names:
            if "data/aotinductor/" in name:
                raise UndecodableError("program: compiled AOTInductor code is not accepted")
            parts = name.split("/")
            if len(parts) >= 2 and parts[-2] in ("weights", "constants") and name.endswith(
                    ".pt"):
                raise UndecodableError(f"program: legacy pickled payload {name} is not "
                                       "accepted; save the program with torch.export.save")
        for name, config in _configs(archive):
            for fqn, meta in config.items():
                if not isinstance(meta, dict):
                    raise UndecodableError(f"program: {name}: malformed entry {fqn[:80]!r}")
                if meta.get("use_pickle"):
                    raise UndecodableError(f"program: {fqn[:80]!r} is pickled; only plain "
                                           "tensors are accepted")
                if name.endswith("_constants_config.json") and not str(
                        meta.get("path_name", "")).startswith(SAFE_CONSTANT_PREFIX):
                    raise UndecodableError(f"program: constant {fqn[:80]!r} is a custom "
                                           "object; only tensor constants are accepted")


def sample_input_names(stream: IO[bytes]) -> list[str]:
    """The archive members holding pickled sample inputs (the worker loads them with
    `weights_only=True` before `torch.export.load` may)."""
    with zipfile.ZipFile(stream) as archive:
        return [n for n in archive.namelist() if "/data/sample_inputs/" in f"/{n}"]
