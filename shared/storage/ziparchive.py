"""A zip archive read one way only: entries whose bytes every reader finds alike.

Python's `zipfile` and miniz (the reader inside torch, `PyTorchStreamReader`) disagree on
archives that are not plain: of two entries of one name `zipfile` reads the last, while miniz
compares names without case and its binary search lands on either copy, depending on the
layout; bytes outside the entries (a prefix, a comment, data between entries) are ignored
differently. So an archive is accepted only if it is plain: the end record at the very end,
no comment, entries named uniquely (bytes and letter case both ignored), and the entries'
local headers, data and data descriptors tiling the file up to the central directory with
nothing between them. Then every reader sees the same entries with the same bytes.
"""

from __future__ import annotations

import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import IO

MAX_ENTRIES = 100_000
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
_EOCD = struct.Struct("<4sHHHHIIH")  # the end of central directory record
_LOCATOR = struct.Struct("<4sIQI")  # the zip64 end record's locator
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_FULL32, _FULL16 = 0xFFFFFFFF, 0xFFFF
_ENCRYPTED = 0x0001 | 0x0040 | 0x2000  # encrypted, strongly encrypted, masked headers
_DESCRIPTOR = 0x0008  # sizes and CRC follow the data
_UTF8 = 0x0800
_UNIX = 3  # the "made by" system whose external attributes hold a Unix mode
_CHUNK = 1 << 20
_DESCRIPTOR_SIG = b"PK\x07\x08"
# Length of a data descriptor -> whether it starts with its signature.
_DESCRIPTOR_LENGTHS = {12: False, 16: True, 20: False, 24: True}


@dataclass(frozen=True)
class ZipEntry:
    """One entry: its name as stored (`raw`) and decoded, and where its data lies."""

    raw: bytes
    name: str
    flags: int
    method: int  # 0 stored, 8 deflated
    crc: int
    compressed: int
    size: int
    offset: int  # of the local header
    data: int = 0  # where the data starts (after the local header)
    mode: int = 0  # the Unix file type and permissions an archiver recorded (0: none)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/") or stat.S_ISDIR(self.mode)

    @property
    def is_plain(self) -> bool:
        """A file or a folder: no symbolic link, device or pipe, whatever a reader unpacks."""
        return stat.S_IFMT(self.mode) in (0, stat.S_IFREG, stat.S_IFDIR)


class NotPlainZip(ValueError):
    """The archive is not a zip, or not a plain one; the message says what is wrong."""


def _read(stream: IO[bytes], offset: int, n: int) -> bytes:
    stream.seek(offset)
    data = stream.read(n)
    if len(data) != n:
        raise NotPlainZip("truncated")
    return data


def _zip64(extra: bytes, values: list[int], sentinels: list[int]) -> list[int]:
    """`values` with each one at its sentinel (all bits set) read from the zip64 extra field
    instead, in order: 8 bytes for a 32-bit field, 4 for the 16-bit disk number."""
    wanted = [i for i, (v, s) in enumerate(zip(values, sentinels, strict=True)) if v == s]
    if not wanted:
        return values
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            field, out, at = extra[pos + 4: pos + 4 + length], list(values), 0
            for i in wanted:
                width = 8 if sentinels[i] == _FULL32 else 4
                if at + width > len(field):
                    raise NotPlainZip("a zip64 field is too short")
                out[i] = int.from_bytes(field[at:at + width], "little")
                at += width
            return out
        pos += 4 + length
    raise NotPlainZip("a size or offset needs a zip64 field that is missing")


def _directory(stream: IO[bytes], size: int) -> tuple[int, int, int]:
    """(offset, size, entries) of the central directory, from the end record(s) at the end."""
    if size < _EOCD.size:
        raise NotPlainZip("too short")
    end = size - _EOCD.size
    sig, disk, cd_disk, here, total, cd_size, cd_offset, comment = _EOCD.unpack(
        _read(stream, end, _EOCD.size))
    if sig != b"PK\x05\x06":
        raise NotPlainZip("no end record at the end of the file (data or a comment after it)")
    if comment or disk or cd_disk or here != total:
        raise NotPlainZip("an archive comment, or an archive of several parts")
    if end >= _LOCATOR.size and _read(stream, end - _LOCATOR.size, 4) == b"PK\x06\x07":
        _, _, at, _ = _LOCATOR.unpack(_read(stream, end - _LOCATOR.size, _LOCATOR.size))
        end -= _LOCATOR.size
        if at + _EOCD64.size != end:
            raise NotPlainZip("the zip64 end record is not where its locator says")
        sig, length, _, _, disk, cd_disk, here, total64, cd_size64, cd_offset64 = (
            _EOCD64.unpack(_read(stream, at, _EOCD64.size)))
        if sig != b"PK\x06\x06" or length != _EOCD64.size - 12 or disk or cd_disk:
            raise NotPlainZip("a malformed zip64 end record")
        for short, full, sentinel in ((total, total64, _FULL16), (cd_size, cd_size64, _FULL32),
                                      (cd_offset, cd_offset64, _FULL32)):
            if short not in (full, sentinel):
                raise NotPlainZip("the end records disagree")
        if here != total64:
            raise NotPlainZip("an archive of several parts")
        total, cd_size, cd_offset, end = total64, cd_size64, cd_offset64, at
    if cd_offset + cd_size != end:
        raise NotPlainZip("bytes between the central directory and the end record")
    if total > MAX_ENTRIES or cd_size > MAX_DIRECTORY_BYTES:
        raise NotPlainZip(f"{total} entries in {cd_size} bytes of directory, more than "
                          f"{MAX_ENTRIES} entries or {MAX_DIRECTORY_BYTES} bytes")
    return cd_offset, cd_size, total


def _central(directory: bytes, count: int) -> list[ZipEntry]:
    entries, pos = [], 0
    for _ in range(count):
        if pos + _CENTRAL.size > len(directory):
            raise NotPlainZip("the central directory is shorter than its entries")
        (sig, made_by, _, flags, method, _, _, crc, compressed, size, name_len, extra_len,
         comment_len, disk, _, external, offset) = _CENTRAL.unpack_from(directory, pos)
        if sig != b"PK\x01\x02":
            raise NotPlainZip("a malformed central directory entry")
        raw = directory[pos + _CENTRAL.size: pos + _CENTRAL.size + name_len]
        extra = directory[pos + _CENTRAL.size + name_len:
                          pos + _CENTRAL.size + name_len + extra_len]
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        size, compressed, offset, disk = _zip64(extra, [size, compressed, offset, disk],
                                                [_FULL32, _FULL32, _FULL32, _FULL16])
        if flags & _ENCRYPTED or method not in (0, 8) or disk:
            raise NotPlainZip(f"entry {raw[:80]!r} is encrypted, compressed with method "
                              f"{method}, or on another part")
        if b"\0" in raw or not raw:
            raise NotPlainZip("an entry without a name, or with a NUL in its name")
        try:
            name = raw.decode("utf-8" if flags & _UTF8 else "cp437")
        except UnicodeDecodeError:
            raise NotPlainZip(f"entry name {raw[:80]!r} is not UTF-8") from None
        # The high 16 bits of the external attributes are a Unix mode when made on Unix (3).
        mode = external >> 16 if made_by >> 8 == _UNIX else 0
        entries.append(ZipEntry(raw, name, flags, method, crc, compressed, size, offset,
                                mode=mode))
    if pos != len(directory):
        raise NotPlainZip("bytes in the central directory that no entry takes")
    return entries


def _check_unique(entries: list[ZipEntry]) -> None:
    """No two entries alike for any reader: by stored bytes or decoded name, case ignored."""
    seen_raw: set[bytes] = set()
    seen_name: set[bytes] = set()
    for entry in entries:
        # bytes.lower() folds A-Z only, as miniz's name comparison does.
        keys = entry.raw.lower(), entry.name.encode("utf-8").lower()
        if keys[0] in seen_raw or keys[1] in seen_name:
            raise NotPlainZip(f"entry {entry.name[:80]!r} appears twice (names differing only "
                              "in letter case are the same entry to torch's reader)")
        seen_raw.add(keys[0])
        seen_name.add(keys[1])


def _placed(stream: IO[bytes], entry: ZipEntry) -> tuple[ZipEntry, int]:
    """The entry with its data's offset, and where its data (and descriptor) end."""
    (sig, _, flags, method, _, _, crc, compressed, _, name_len,
     extra_len) = _LOCAL.unpack(_read(stream, entry.offset, _LOCAL.size))
    raw = _read(stream, entry.offset + _LOCAL.size, name_len)
    same = sig == b"PK\x03\x04" and raw == entry.raw and (flags, method) == (entry.flags,
                                                                          entry.method)
    if same and not flags & _DESCRIPTOR:
        same = crc == entry.crc and compressed in (entry.compressed, _FULL32)
    if not same:
        raise NotPlainZip(f"the local header of {entry.name[:80]!r} differs from its entry "
                          "in the central directory")
    data = entry.offset + _LOCAL.size + name_len + extra_len
    return replace(entry, data=data), data + entry.compressed


def _descriptor_fits(stream: IO[bytes], entry: ZipEntry, at: int, gap: int) -> bool:
    if gap not in _DESCRIPTOR_LENGTHS:
        return False
    raw = _read(stream, at, gap)
    if _DESCRIPTOR_LENGTHS[gap]:
        if raw[:4] != _DESCRIPTOR_SIG:
            return False
        raw = raw[4:]
    width = 8 if len(raw) == 20 else 4
    crc = int.from_bytes(raw[:4], "little")
    compressed = int.from_bytes(raw[4:4 + width], "little")
    return (crc, compressed) == (entry.crc, entry.compressed)


def read_entries(stream: IO[bytes]) -> list[ZipEntry]:
    """The entries of a plain zip archive, in central directory order (see the module's
    docstring); `NotPlainZip` naming the first thing that is not plain."""
    stream.seek(0, 2)
    size = stream.tell()
    cd_offset, cd_size, count = _directory(stream, size)
    entries = _central(_read(stream, cd_offset, cd_size), count)
    if not entries:
        raise NotPlainZip("no entries")
    _check_unique(entries)
    ordered = sorted(entries, key=lambda e: e.offset)
    bounds = [e.offset for e in ordered[1:]] + [cd_offset]
    if ordered[0].offset != 0:
        raise NotPlainZip("bytes before the first entry")
    placed: dict[int, ZipEntry] = {}
    for entry, following in zip(ordered, bounds, strict=True):
        if following == entry.offset:
            raise NotPlainZip(f"entry {entry.name[:80]!r} shares its data with another")
        placed[entry.offset], end = _placed(stream, entry)
        if following < end:
            raise NotPlainZip(f"entry {entry.name[:80]!r} overlaps what follows it")
        if following != end and not (entry.flags & _DESCRIPTOR
                                     and _descriptor_fits(stream, entry, end, following - end)):
            raise NotPlainZip(f"bytes after entry {entry.name[:80]!r} that no entry takes")
    return [placed[e.offset] for e in entries]


def _pieces(stream: IO[bytes], entry: ZipEntry) -> Iterator[bytes]:
    """An entry's data as stored, or inflated, in pieces of at most about `_CHUNK` bytes."""
    inflater = zlib.decompressobj(-15) if entry.method == 8 else None
    try:
        for start in range(0, entry.compressed, _CHUNK):
            raw = _read(stream, entry.data + start, min(_CHUNK, entry.compressed - start))
            while raw:
                if inflater is None:
                    yield raw
                    break
                yield inflater.decompress(raw, _CHUNK)
                raw = inflater.unconsumed_tail
        if inflater is not None:
            yield inflater.flush()
    except zlib.error as e:
        raise NotPlainZip(f"entry {entry.name[:80]!r} does not inflate ({e})") from None


def entry_chunks(stream: IO[bytes], entry: ZipEntry, limit: int) -> Iterator[bytes]:
    """An entry's bytes, inflated, in chunks of at most about a megabyte: `NotPlainZip`
    beyond `limit` bytes, and, after the last chunk, unless its size and CRC match."""
    if entry.size > limit:
        raise NotPlainZip(f"entry {entry.name[:80]!r} is larger than {limit} bytes")
    crc = size = 0
    for data in _pieces(stream, entry):
        size += len(data)
        if size > entry.size:
            break
        crc = zlib.crc32(data, crc)
        if data:
            yield data
    if size != entry.size or crc != entry.crc:
        raise NotPlainZip(f"entry {entry.name[:80]!r} does not match its size and CRC")


def read_entry(stream: IO[bytes], entry: ZipEntry, limit: int) -> bytes:
    """An entry's bytes (inflated, CRC checked); `NotPlainZip` beyond `limit` bytes."""
    return b"".join(entry_chunks(stream, entry, limit))
