"""A Hugging Face bundle: a `save_pretrained` folder uploaded as a zip or a tar.gz, read in
memory, never unpacked.

Only `config.json`, `model.safetensors` and `preprocessor_config.json` are read, at the top
of the archive or in its one folder; any other member, a link, a device, a name that leaves
the folder, a member twice, or more than `limit` bytes of members in all is refused. Zips
are read as `shared.storage.ziparchive` reads them (plain ones only), tar.gz archives as
`shared.storage.tararchive` does; the API and the worker read a bundle with this same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from shared.errors import SpecError, TooLargeError, UndecodableError
from shared.jsonio import loads
from shared.models.artifacts import MAX_SAFETENSORS_HEADER, header_length, safetensors_header
from shared.storage.tararchive import NotPlainTar, read_members
from shared.storage.ziparchive import NotPlainZip, entry_chunks, read_entries

CONFIG, WEIGHTS, PREPROCESSOR = "config.json", "model.safetensors", "preprocessor_config.json"
MEMBERS = (CONFIG, WEIGHTS, PREPROCESSOR)
MAX_JSON_BYTES = 16 * 1024 * 1024
_ZIP, _GZIP = b"PK\x03\x04", b"\x1f\x8b"


@dataclass(frozen=True)
class Bundle:
    """What a bundle holds: the model's config, its image processor's config (if any), the
    weights' safetensors header and, when asked for, the weights file's bytes."""

    config: dict[str, Any]
    preprocessor: dict[str, Any] | None
    header: dict[str, Any]
    weights: bytes | None = None


def _member(name: str, is_dir: bool, folder: list[str | None]) -> str | None:
    """The member's name in the bundle (None for its folder), refusing anything but one of
    `MEMBERS`, all at the top of the archive or all in one folder (`folder` keeps which)."""
    path = name
    while path.startswith("./"):
        path = path[2:]
    parts = path.removesuffix("/").split("/") if path not in ("", ".", "./") else []
    if (name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts)
            or len(parts) > 2 or (is_dir and len(parts) > 1)):
        raise UndecodableError(f"bundle: member {name[:80]!r} is not a file of the "
                               "save_pretrained folder (absolute, '..', or nested deeper)")
    if is_dir and not parts:
        return None
    if not is_dir and parts[-1] not in MEMBERS:
        raise UndecodableError(f"bundle: member {name[:80]!r} is not accepted; a bundle "
                               f"holds only {', '.join(MEMBERS)}")
    where = parts[0] if is_dir or len(parts) == 2 else None
    if folder and folder[0] != where:
        raise UndecodableError(f"bundle: member {name[:80]!r} is not in the folder of the "
                               "others; put config.json, model.safetensors and "
                               "preprocessor_config.json side by side")
    folder[:] = [where]
    return None if is_dir else parts[-1]


def _zip_members(stream: IO[bytes], limit: int) -> Iterator[tuple[str, bool, int,
                                                                  Iterator[bytes]]]:
    try:
        entries = read_entries(stream)
    except NotPlainZip as e:
        raise UndecodableError(f"bundle: not a plain zip archive ({e})") from None
    for entry in entries:
        if not entry.is_plain:
            raise UndecodableError(f"bundle: member {entry.name[:80]!r} is a symbolic link "
                                   "or a special file; only files are accepted")
        yield entry.name, entry.is_dir, entry.size, entry_chunks(stream, entry, limit)


def _tar_members(stream: IO[bytes]) -> Iterator[tuple[str, bool, int, Iterator[bytes]]]:
    for member, chunks in read_members(stream):
        yield member.name, member.is_dir, member.size, chunks


def _json(name: str, chunks: Iterator[bytes]) -> dict[str, Any]:
    try:
        value = loads(b"".join(chunks), f"bundle: {name}")
    except SpecError as e:
        raise UndecodableError(e.message) from None
    if not isinstance(value, dict):
        raise UndecodableError(f"bundle: {name} is not a JSON object")
    return value


def _head_wanted(head: bytearray) -> int:
    """How many bytes of a safetensors file hold its header, as far as `head` tells."""
    if len(head) < 8:
        return 8
    return 8 + min(header_length(bytes(head[:8])) - 8, MAX_SAFETENSORS_HEADER)


def _weights(chunks: Iterator[bytes], size: int, keep: bool) -> tuple[dict[str, Any],
                                                                      bytes | None]:
    """The safetensors header, and the whole file if `keep`; every byte is read either way
    (a zip entry's CRC is checked at its end)."""
    head, kept = bytearray(), []
    for chunk in chunks:
        if keep:
            kept.append(chunk)
        if len(head) < _head_wanted(head):
            head += chunk
    try:
        header = safetensors_header(bytes(head), size)
    except UndecodableError as e:
        raise UndecodableError(f"bundle: {WEIGHTS}: {e.message.removeprefix('weights: ')}"
                               ) from None
    return header, b"".join(kept) if keep else None


def _read(members: Iterator[tuple[str, bool, int, Iterator[bytes]]], limit: int,
          weights: bool) -> Bundle:
    found: dict[str, Any] = {}
    folder: list[str | None] = []
    total = 0
    for name, is_dir, size, chunks in members:
        member = _member(name, is_dir, folder)
        if member is None:
            continue
        if member in found:
            raise UndecodableError(f"bundle: {member} appears twice")
        total += size
        if total > limit:
            raise TooLargeError(f"bundle: its members hold more than {limit} bytes "
                                "(SALIENCY_MAX_MODEL_BYTES)")
        if member == WEIGHTS:
            found[member] = _weights(chunks, size, weights)
        elif size > MAX_JSON_BYTES:
            raise UndecodableError(f"bundle: {member} is larger than {MAX_JSON_BYTES} bytes")
        else:
            found[member] = _json(member, chunks)
    for needed in (CONFIG, WEIGHTS):
        if needed not in found:
            raise UndecodableError(f"bundle: no {needed}; a bundle is a folder written by "
                                   "save_pretrained, as a zip or a tar.gz")
    header, data = found[WEIGHTS]
    return Bundle(found[CONFIG], found.get(PREPROCESSOR), header, data)


def read_bundle(stream: IO[bytes], limit: int, *, weights: bool = False) -> Bundle:
    """The bundle in `stream` (a zip or a tar.gz), its members at most `limit` bytes in all;
    `weights` keeps the weights' bytes (the worker), else only their header is kept (the
    API). Refusals are `UndecodableError`s naming the member, or `TooLargeError`."""
    stream.seek(0)
    magic = stream.read(4)
    stream.seek(0)
    try:
        if magic == _ZIP:
            return _read(_zip_members(stream, limit), limit, weights)
        if magic[:2] == _GZIP:
            return _read(_tar_members(stream), limit, weights)
    except (NotPlainZip, NotPlainTar) as e:
        raise UndecodableError(f"bundle: {e}") from None
    raise UndecodableError("bundle: neither a zip nor a tar.gz archive (make one of the "
                           "save_pretrained folder with `zip -r` or `tar czf`)")
