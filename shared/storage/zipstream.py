"""A zip archive written as a stream of bytes, in flat memory.

The API streams exports of any size: each entry goes out as soon as it is added (local header,
then data), and the central directory is spooled to a temporary file until `close` sends it.
Every entry's sizes and CRC are known before its header is written (bytes in memory, or a
`Deflated` spool), so no entry needs a data descriptor; zip64 fields are written only where a
size, an offset or the entry count does not fit the classic fields. Entries are regular files
made on Unix (mode 0644), so `shared.storage.ziparchive` and every unzip read them alike.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from typing import IO

STORED, DEFLATED = 0, 8
ZIP64_LIMIT = 0xFFFFFFFF  # a size or offset at or above this needs zip64 fields
ZIP64_COUNT = 0xFFFF  # as many entries as this need the zip64 end record
_FULL32, _FULL16 = 0xFFFFFFFF, 0xFFFF  # a classic field's value when zip64 holds the real one
_CHUNK = 1 << 20
_UTF8 = 0x0800
_MADE_BY = (3 << 8) | 45  # Unix, zip 4.5
_FILE_MODE = 0o100644 << 16
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR = struct.Struct("<4sIQI")


def dos_time(seconds: float) -> tuple[int, int]:
    """(time, date) of a Unix time in the zip's DOS format (UTC, 2-second steps, 1980 on)."""
    t = time.gmtime(max(seconds, 315532800))
    return (t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2,
            (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday)


class Deflated:
    """An entry's bytes deflated into a temporary file as they are written, for an entry too
    large to hold (its sizes and CRC are then known before its header goes out)."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()
        self.size = self.compressed = self.crc = 0
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        self._put(self._deflater.compress(data))

    def _put(self, data: bytes) -> None:
        self.compressed += len(data)
        self.file.write(data)

    def finish(self) -> None:
        self._put(self._deflater.flush())
        self.file.seek(0)

    def close(self) -> None:
        self.file.close()


class ZipStream:
    """Builds an archive entry by entry; each call answers the bytes to send next."""

    def __init__(self, modified: float) -> None:
        self._time, self._date = dos_time(modified)
        self._offset = 0
        self._count = 0
        self._directory: IO[bytes] = tempfile.TemporaryFile()

    def entry(self, name: str, data: bytes, compress: bool = False) -> bytes:
        """An entry of bytes in memory, deflated if `compress`."""
        crc = zlib.crc32(data)
        stored = data
        if compress:
            deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            stored = deflater.compress(data) + deflater.flush()
        method = DEFLATED if compress else STORED
        return self._header(name, method, crc, len(stored), len(data)) + stored

    def spooled(self, name: str, spool: Deflated) -> Iterator[bytes]:
        """An entry of a finished `Deflated` spool, sent in chunks of about a megabyte."""
        yield self._header(name, DEFLATED, spool.crc, spool.compressed, spool.size)
        while chunk := spool.file.read(_CHUNK):
            yield chunk

    def _header(self, name: str, method: int, crc: int, compressed: int, size: int) -> bytes:
        """The entry's local header; its central record goes to the spooled directory."""
        raw = name.encode("utf-8")
        big = size >= ZIP64_LIMIT or compressed >= ZIP64_LIMIT
        extra = struct.pack("<HHQQ", 1, 16, size, compressed) if big else b""
        version = 45 if big else 20
        local = _LOCAL.pack(b"PK\x03\x04", version, _UTF8, method, self._time, self._date, crc,
                            _FULL32 if big else compressed, _FULL32 if big else size,
                            len(raw), len(extra)) + raw + extra
        offset = self._offset
        wide = [(size, big), (compressed, big), (offset, offset >= ZIP64_LIMIT)]
        central_extra = b"".join(struct.pack("<Q", value) for value, over in wide if over)
        if central_extra:
            central_extra = struct.pack("<HH", 1, len(central_extra)) + central_extra
        fields = [_FULL32 if over else value for value, over in wide]
        self._directory.write(_CENTRAL.pack(
            b"PK\x01\x02", _MADE_BY, 45 if central_extra else 20, _UTF8, method, self._time,
            self._date, crc, fields[1], fields[0], len(raw), len(central_extra), 0, 0, 0,
            _FILE_MODE, fields[2]) + raw + central_extra)
        self._count += 1
        self._offset += len(local) + compressed
        return local

    def discard(self) -> None:
        """Drop the spooled directory (after `close`, or instead of it)."""
        self._directory.close()

    def close(self) -> Iterator[bytes]:
        """The central directory and the end record(s)."""
        start, size = self._offset, self._directory.tell()
        self._directory.seek(0)
        while chunk := self._directory.read(_CHUNK):
            yield chunk
        self.discard()
        end = start + size
        big = self._count >= ZIP64_COUNT or start >= ZIP64_LIMIT or size >= ZIP64_LIMIT
        if big:
            yield _EOCD64.pack(b"PK\x06\x06", _EOCD64.size - 12, _MADE_BY, 45, 0, 0,
                               self._count, self._count, size, start)
            yield _LOCATOR.pack(b"PK\x06\x07", 0, end, 1)
        count = _FULL16 if big else self._count
        yield _EOCD.pack(b"PK\x05\x06", 0, 0, count, count, _FULL32 if big else size,
                         _FULL32 if big else start, 0)
