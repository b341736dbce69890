"""Model artifacts checked by their container alone, without torch: a safetensors header, or a
`torch.export` archive that loads without any pickle.

A `.pt2` archive can carry pickled weights, constants and objects that `torch.export.load`
would unpickle (running code); an archive that needs any of them is refused, and so is one
whose bytes torch's reader could read otherwise than this check does. The worker completes
the check with torch's own reader (`worker.models.programs`).
"""

from __future__ import annotations

import json
import string
import struct
from typing import IO, Any

from shared.errors import SpecError, UndecodableError
from shared.jsonio import loads
from shared.storage.ziparchive import NotPlainZip, ZipEntry, read_entries, read_entry

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
MAX_CONFIG_BYTES = 64 * 1024 * 1024
SAFE_CONSTANT_PREFIX = "tensor_"
WEIGHTS_CONFIG, CONSTANTS_CONFIG = "_weights_config.json", "_constants_config.json"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


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


def _fold(name: str) -> str:
    """A name as torch's reader compares it: letter case ignored, for A-Z only."""
    return name.translate(_ASCII_LOWER)


def _entries_by_name(stream: IO[bytes]) -> dict[str, ZipEntry]:
    """The entries of a `.pt2` archive by the name torch gives them (relative to the archive's
    one top folder, `_fold`ed), refusing any archive whose bytes readers could read apart
    (`shared.storage.ziparchive`) or with an entry outside that folder: torch would then fall back
    to reading it as an older format, which unpickles."""
    try:
        entries = read_entries(stream)
    except NotPlainZip as e:
        raise UndecodableError(f"program: not a torch.export .pt2 archive, or one whose bytes "
                               f"torch could read otherwise: {e}") from None
    top = entries[0].raw.split(b"/", 1)[0] + b"/"
    names: dict[str, ZipEntry] = {}
    for entry in entries:
        if not entry.raw.startswith(top) or entry.raw == top:
            raise UndecodableError(f"program: entry {entry.name[:80]!r} is not in the "
                                   f"archive's folder {top.decode(errors='replace')!r}")
        try:
            names[_fold(entry.raw[len(top):].decode("utf-8"))] = entry
        except UnicodeDecodeError:
            raise UndecodableError(f"program: entry name {entry.raw[:80]!r} is not UTF-8"
                                   ) from None
    return names


def check_payload_config(name: str, raw: bytes) -> None:
    """Refuse a weights or constants config (`*_weights_config.json`,
    `*_constants_config.json`) that makes `torch.export.load` unpickle anything: a payload
    marked `use_pickle`, or a constant that is not a tensor (a custom or opaque object)."""
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise UndecodableError(f"program: {name} is not JSON ({e})") from None
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    if not isinstance(entries, dict):
        raise UndecodableError(f"program: {name}: malformed config")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise UndecodableError(f"program: {name}: malformed entry {fqn[:80]!r}")
        if meta.get("use_pickle"):
            raise UndecodableError(f"program: {fqn[:80]!r} is pickled; only plain "
                                   "tensors are accepted")
        if _fold(name).endswith(CONSTANTS_CONFIG) and not str(
                meta.get("path_name", "")).startswith(SAFE_CONSTANT_PREFIX):
            raise UndecodableError(f"program: constant {fqn[:80]!r} is a custom "
                                   "object; only tensor constants are accepted")


def check_pt2(stream: IO[bytes]) -> None:
    """Refuse a `.pt2` archive that is not a plain zip of an exported program (see
    `_entries_by_name`), or that would make `torch.export.load` unpickle anything (pickled weights
    or constants, custom or opaque objects, legacy `.pt` payloads, compiled AOTInductor
    code). Names are compared as torch's reader compares them, letter case ignored."""
    names = _entries_by_name(stream)
    models = [n for n in names if n.startswith("models/")]
    if not models:
        raise UndecodableError("program: not a torch.export .pt2 archive (no models/)")
    for name in models:
        if not name.endswith(".json"):
            raise UndecodableError(f"program: {name[:80]!r} is not a program's JSON")
    for name, entry in names.items():
        if "data/aotinductor/" in name:
            raise UndecodableError("program: compiled AOTInductor code is not accepted")
        parts = name.split("/")
        if len(parts) >= 2 and parts[-2] in ("weights", "constants") and name.endswith(".pt"):
            raise UndecodableError(f"program: legacy pickled payload {entry.name[:80]!r} is "
                                   "not accepted; save the program with torch.export.save")
        if name.endswith((WEIGHTS_CONFIG, CONSTANTS_CONFIG)):
            try:
                raw = read_entry(stream, entry, MAX_CONFIG_BYTES)
            except NotPlainZip as e:
                raise UndecodableError(f"program: {e}") from None
            check_payload_config(name, raw)
