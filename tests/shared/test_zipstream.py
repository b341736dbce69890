"""The streamed zip writer: Python's zipfile and the service's own strict reader read back every
entry, stored, deflated or spooled, with and without zip64 fields; memory stays flat."""

from __future__ import annotations

import io
import stat
import tracemalloc
import zipfile

import pytest

from shared.storage import zipstream
from shared.storage.ziparchive import entry_chunks, read_entries
from shared.storage.zipstream import Deflated, ZipStream

BIG = bytes(range(256)) * 5000  # 1.28 MB: the spool is sent in more than one chunk


def _archive() -> tuple[bytes, dict[str, bytes]]:
    want = {"metadata.json": b'{"a": 1}', "data/000000.png": b"\x89PNG" + bytes(300),
            "fields/gradient_0/000000.npy": bytes(range(200)), "samples.json": BIG,
            "d\u00e9j\u00e0.txt": b"utf-8 name"}
    stream = ZipStream(modified=1_700_000_000)
    out = [stream.entry("metadata.json", want["metadata.json"], compress=True),
           stream.entry("data/000000.png", want["data/000000.png"]),
           stream.entry("fields/gradient_0/000000.npy", want["fields/gradient_0/000000.npy"],
                        compress=True)]
    spool = Deflated()
    for start in range(0, len(BIG), 70_000):
        spool.write(BIG[start:start + 70_000])
    spool.finish()
    out.extend(stream.spooled("samples.json", spool))
    spool.close()
    out.append(stream.entry("d\u00e9j\u00e0.txt", want["d\u00e9j\u00e0.txt"]))
    out.extend(stream.close())
    return b"".join(out), want


def _check(data: bytes, want: dict[str, bytes]) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        assert {name: z.read(name) for name in z.namelist()} == want
        assert z.getinfo("metadata.json").date_time == (2023, 11, 14, 22, 13, 20)
    entries = read_entries(io.BytesIO(data))
    assert [e.name for e in entries] == list(want)
    for entry in entries:
        assert entry.is_plain and stat.S_ISREG(entry.mode)
        assert b"".join(entry_chunks(io.BytesIO(data), entry, 1 << 30)) == want[entry.name]


def test_every_entry_reads_back_with_zipfile_and_the_strict_reader():
    data, want = _archive()
    _check(data, want)


def test_zip64_fields_read_back_where_they_are_needed(monkeypatch):
    # Thresholds of 0 put every size, offset and the count in zip64 fields, as a 5 GB
    # archive of 70,000 entries would.
    monkeypatch.setattr(zipstream, "ZIP64_LIMIT", 0)
    monkeypatch.setattr(zipstream, "ZIP64_COUNT", 0)
    data, want = _archive()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    _check(data, want)


def test_memory_stays_flat_however_many_entries():
    stream = ZipStream(modified=0)
    sent = 0

    def add(n: int) -> None:
        nonlocal sent
        for i in range(n):
            sent += len(stream.entry(f"fields/gradient_0/{i:06d}.png", b"x" * 64))

    tracemalloc.start()
    try:
        add(1000)
        before = tracemalloc.get_traced_memory()[0]
        add(20_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024  # zipfile keeps ~500 bytes an entry: 10 MB here
    tail = b"".join(stream.close())
    assert sent + len(tail) > 21_000 * 64


@pytest.mark.parametrize("seconds, expected", [(0, (1980, 1, 1, 0, 0, 0)),
                                               (1_700_000_001, (2023, 11, 14, 22, 13, 20))])
def test_times_are_dos_times_in_utc(seconds, expected):
    data = ZipStream(seconds)
    raw = data.entry("a", b"") + b"".join(data.close())
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        assert z.getinfo("a").date_time == expected
