"""Plain zip archives are read as `zipfile` reads them; any archive two readers could read
apart is refused: a name twice (in either order, or in other letter case), bytes before,
between or after the entries, a comment, an entry the central directory does not list.
Entries stream in chunks, and say whether they are links or special files."""

from __future__ import annotations

import io
import stat
import warnings
import zipfile

import numpy as np
import pytest

from shared.storage.ziparchive import NotPlainZip, entry_chunks, read_entries, read_entry


def archive(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED,
            comment: bytes = b"", unlisted: str | None = None) -> bytes:
    """A zip of `entries` in order; `unlisted` is written but left out of the directory."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(out, "w", compression=compression) as z:
            for name, data in entries:
                z.writestr(name, data)
            z.comment = comment
            if unlisted is not None:
                z.filelist = [i for i in z.filelist if i.filename != unlisted]
    return out.getvalue()


def contents(data: bytes) -> dict[str, bytes]:
    stream = io.BytesIO(data)
    return {e.name: read_entry(stream, e, 1 << 20) for e in read_entries(stream)}


ENTRIES = [("a/x", b"hello " * 50), ("a/empty", b""), ("a/\u00e9t\u00e9", b"summer")]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_plain_archive_reads_as_zipfile_reads_it(compression):
    data = archive(ENTRIES, compression)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        expected = {name: z.read(name) for name in z.namelist()}
    assert contents(data) == expected == dict(ENTRIES)


def test_streamed_entries_with_data_descriptors_and_zip64_fields_are_plain():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        with z.open("a/streamed", "w") as w:  # sizes in a descriptor after the data
            w.write(b"streamed")
        with z.open("a/big", "w", force_zip64=True) as w:
            w.write(b"zip64")
    assert contents(out.getvalue()) == {"a/streamed": b"streamed", "a/big": b"zip64"}


def test_an_archive_with_zip64_end_records_is_plain(monkeypatch):
    # zipfile writes the zip64 end records past this many entries (65,535).
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    data = archive(ENTRIES)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert contents(data) == dict(ENTRIES)


PLAIN = archive(ENTRIES)
REFUSED = [
    ("not a zip", b"PK\x03\x04" + bytes(40), "no end record"),
    ("a name twice, apart", archive([("a/x", b"1"), ("a/y", b""),
                                                        ("a/x", b"2")]), "appears twice"),
    ("a name twice, adjacent", archive([("a/y", b""), ("a/x", b"1"), ("a/x", b"2")]),
     "appears twice"),
    ("a name in other letter case", archive([("a/Config.json", b"1"), ("a/config.json", b"2")]),
     "appears twice"),
    ("bytes before", b"junk" + PLAIN, "bytes between the central directory"),
    ("bytes after", PLAIN + b"junk", "no end record"),
    ("a comment", archive(ENTRIES, comment=b"hello"), "comment"),
    ("an entry the directory does not list",
     archive([("a/x", b"1"), ("a/hidden", b"payload"), ("a/y", b"2")], unlisted="a/hidden"),
     "bytes after entry 'a/x'"),
    ("a last entry the directory does not list",
     archive([("a/x", b"1"), ("a/hidden", b"payload")], unlisted="a/hidden"),
     "bytes after entry 'a/x'"),
    ("truncated", PLAIN[:-30], "no end record"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_an_archive_readers_could_read_apart_is_refused(case):
    _, data, says = case
    with pytest.raises(NotPlainZip, match=says):
        read_entries(io.BytesIO(data))


def test_two_directory_entries_sharing_one_entrys_data_are_refused():
    data = bytearray(archive([("a/x", b"1"), ("a/y", b"2")]))
    first = data.index(b"PK\x01\x02")
    second = data.index(b"PK\x01\x02", first + 4)
    data[second + 42: second + 46] = bytes(4)  # a/y's local header offset: a/x's, 0
    with pytest.raises(NotPlainZip, match="shares its data"):
        read_entries(io.BytesIO(bytes(data)))


def test_an_entry_larger_than_the_limit_is_refused_before_it_is_inflated():
    data = archive([("a/zeros", bytes(1 << 20))], zipfile.ZIP_DEFLATED)
    stream = io.BytesIO(data)
    (entry,) = read_entries(stream)
    with pytest.raises(NotPlainZip, match="larger than"):
        read_entry(stream, entry, 1000)


def test_a_large_entry_streams_in_chunks_and_its_crc_is_checked_at_the_end():
    payload = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    data = archive([("a/big", payload + bytes(2 << 20))], zipfile.ZIP_DEFLATED)
    stream = io.BytesIO(data)
    (entry,) = read_entries(stream)
    chunks = list(entry_chunks(stream, entry, 8 << 20))
    assert len(chunks) > 2 and max(map(len, chunks)) <= 1 << 20
    assert b"".join(chunks) == payload + bytes(2 << 20)
    damaged = bytearray(data)
    damaged[entry.data + entry.compressed // 2] ^= 0xFF
    with pytest.raises(NotPlainZip):
        list(entry_chunks(io.BytesIO(bytes(damaged)), entry, 8 << 20))


def test_the_type_an_archiver_recorded_says_whether_an_entry_is_plain():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, mode in (("a/file", stat.S_IFREG | 0o644), ("a/dir/", stat.S_IFDIR | 0o755),
                           ("a/link", stat.S_IFLNK | 0o777), ("a/fifo", stat.S_IFIFO | 0o644)):
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, mode << 16
            z.writestr(info, b"")
    entries = read_entries(io.BytesIO(out.getvalue()))
    assert [(e.is_plain, e.is_dir) for e in entries] == [(True, False), (True, True),
                                                          (False, False), (False, False)]
