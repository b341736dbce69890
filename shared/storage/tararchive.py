"""A tar archive (gzip-compressed, or plain) read one way only: plain files and folders,
nothing else.

Python's `tarfile` reads an extended (pax) header or a GNU long name whole into memory,
however long its header says it is, so a small upload could make it hold gigabytes; and it
unpacks links, devices and pipes as they come. This reader reads ustar headers itself:
member data is streamed in chunks, a pax header or long name is read only up to a small
bound, and a member that is a link, a device, a pipe or a sparse file is refused, naming it.
After the end of the archive only zeros may follow (a few kilobytes of record padding).
Each member says where its data starts in the (uncompressed) archive, so that a plain tar's
member can be read again later by a range read.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

BLOCK = 512
MAX_HEADER_DATA = 64 * 1024  # a pax header's records, or a GNU long name
MAX_PADDING = 64 * 1024  # zeros after the end of the archive
_CHUNK = 1 << 20
_FILE, _DIR = (b"0", b"\0", b"7"), b"5"
_PAX, _GLOBAL, _LONGNAME = b"x", b"g", b"L"
_REFUSED = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device",
            b"4": "a block device", b"6": "a pipe", b"K": "a link", b"S": "a sparse file"}


class NotPlainTar(ValueError):
    """The archive is not a tar (or not gzip-compressed where it must be), or not a plain
    one; the message says why."""


@dataclass(frozen=True)
class TarMember:
    """A member as the archive names it (pax and GNU long names applied), its size, and the
    offset of its data in the uncompressed archive."""

    name: str
    size: int
    is_dir: bool
    offset: int = 0


class _Reader:
    """The archive's bytes (decompressed when `compressed`), read exactly, counted, with
    gzip's errors made `NotPlainTar`."""

    def __init__(self, stream: IO[bytes], compressed: bool) -> None:
        self.source = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
        self.compressed = compressed
        self.offset = 0

    def read(self, n: int, *, exact: bool = True) -> bytes:
        try:
            data = self.source.read(n)
        except (OSError, EOFError, zlib.error) as e:
            if not self.compressed:
                raise
            raise NotPlainTar(f"not a gzip-compressed archive ({e})") from None
        while not self.compressed and data and len(data) < n:  # a short read of a network stream
            more = self.source.read(n - len(data))
            if not more:
                break
            data += more
        self.offset += len(data)
        if exact and len(data) != n:
            raise NotPlainTar(f"truncated at byte {self.offset}")
        return data


def _number(field: bytes, what: str) -> int:
    """An octal header field (NUL- or space-terminated); base-256 numbers are refused."""
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if field[0] & 0x80 or not all(48 <= c <= 55 for c in text):
        raise NotPlainTar(f"a header's {what} is not an octal number")
    return int(text, 8)


def _checksum_ok(block: bytes) -> bool:
    """The header's checksum, as unsigned or (as some old archivers wrote it) signed bytes."""
    stored = _number(block[148:156], "checksum")
    blanked = block[:148] + b" " * 8 + block[156:]
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return stored in (sum(blanked), signed)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotPlainTar(f"{what} {raw[:80]!r} is not UTF-8") from None


def _pax(records: bytes) -> dict[str, str]:
    """The `length key=value\\n` records of a pax header."""
    out, pos = {}, 0
    while pos < len(records):
        length_text, space, _ = records[pos:pos + 12].partition(b" ")
        if not space or not length_text.isdigit():
            raise NotPlainTar("a malformed pax header")
        end = pos + int(length_text)
        record = records[pos + len(length_text) + 1:end]
        key, eq, value = record.partition(b"=")
        if end > len(records) or not eq or not record.endswith(b"\n"):
            raise NotPlainTar("a malformed pax header")
        out[_text(key, "a pax key")] = _text(value[:-1], "a pax value")
        pos = end
    return out


def _padded(size: int) -> int:
    return -size % BLOCK


class _Members:
    """Walks the headers; `data` streams the current member's bytes."""

    def __init__(self, stream: IO[bytes], compressed: bool) -> None:
        self.reader = _Reader(stream, compressed)
        self._left = self._pad = 0

    def _header_data(self, size: int, what: str) -> bytes:
        if size > MAX_HEADER_DATA:
            raise NotPlainTar(f"{what} of {size} bytes (at most {MAX_HEADER_DATA})")
        data = self.reader.read(size)
        self.reader.read(_padded(size))
        return data

    def _end(self) -> None:
        """After the first zero block: zeros only, and not many."""
        rest = self.reader.read(MAX_PADDING + 1, exact=False)
        if len(rest) > MAX_PADDING or rest.count(0) != len(rest):
            raise NotPlainTar("data after the end of the archive")

    def __iter__(self) -> Iterator[TarMember]:
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            block = self.reader.read(BLOCK, exact=False)
            if not block or block.count(0) == BLOCK:
                if pax or long_name is not None:
                    raise NotPlainTar("an extended header with no member after it")
                if len(block) not in (0, BLOCK):
                    raise NotPlainTar(f"truncated at byte {self.reader.offset}")
                self._end()
                return
            at = self.reader.offset - len(block)
            if len(block) != BLOCK:
                raise NotPlainTar(f"truncated at byte {self.reader.offset}")
            if block[257:262] != b"ustar":
                raise NotPlainTar(f"not a tar archive (no ustar header at byte {at})")
            if not _checksum_ok(block):
                raise NotPlainTar(f"a header whose checksum does not match at byte {at}")
            kind = block[156:157]
            size = _number(block[124:136], "size")
            name = block[:100].split(b"\0", 1)[0]
            if block[257:265] == b"ustar\x0000":  # POSIX: a prefix of the name
                prefix = block[345:500].split(b"\0", 1)[0]
                name = prefix + b"/" + name if prefix else name
            if kind == _PAX:
                pax = _pax(self._header_data(size, "a pax header"))
                continue
            if kind == _GLOBAL:
                self._header_data(size, "a global pax header")
                continue
            if kind == _LONGNAME:
                long_name = _text(self._header_data(size, "a long name").rstrip(b"\0"),
                                  "a long name")
                continue
            text = pax.get("path", long_name if long_name is not None else _text(name, "name"))
            if kind in _REFUSED or any(k.startswith("GNU.sparse") for k in pax):
                what = _REFUSED.get(kind, "a sparse file")
                raise NotPlainTar(f"member {text[:80]!r} is {what}; only files are accepted")
            if kind not in _FILE and kind != _DIR:
                raise NotPlainTar(f"member {text[:80]!r} has type {kind!r}; only files are "
                                  "accepted")
            if "size" in pax:
                if not pax["size"].isdigit():
                    raise NotPlainTar(f"member {text[:80]!r}: a pax size that is no number")
                size = int(pax["size"])
            pax, long_name = {}, None
            self._left, self._pad = size, _padded(size)
            yield TarMember(text.rstrip("/") if kind == _DIR else text, size, kind == _DIR,
                            self.reader.offset)
            for _ in self.data():  # what the caller left unread
                pass

    def data(self) -> Iterator[bytes]:
        """The rest of the current member's bytes, in chunks of at most a megabyte."""
        while self._left:
            chunk = self.reader.read(min(self._left, _CHUNK))
            self._left -= len(chunk)
            yield chunk
        self.reader.read(self._pad)
        self._pad = 0


def read_members(stream: IO[bytes], compressed: bool = True
                 ) -> Iterator[tuple[TarMember, Iterator[bytes]]]:
    """Each member in order, with an iterator over its bytes; the caller reads them, or not,
    before asking for the next member (its size is known first, so it can refuse it unread).
    `compressed`: a gzip-compressed archive (a bundle), else a plain tar (a data-set shard)."""
    members = _Members(stream, compressed)
    for member in members:
        yield member, members.data()
