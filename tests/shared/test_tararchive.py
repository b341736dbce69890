"""tar.gz archives are read as `tarfile` reads them when they hold plain files and folders,
whatever wrote them (pax, GNU or ustar headers, long names); links, devices, pipes, huge
extended headers, bad checksums and data after the end are refused."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from shared.storage.tararchive import MAX_HEADER_DATA, NotPlainTar, read_members

LONG = "folder/" + "n" * 150 + ".json"  # longer than a ustar name field


def tgz(members: list[tuple[str, bytes | tarfile.TarInfo]], fmt: int = tarfile.PAX_FORMAT,
        trailer: bytes = b"") -> bytes:
    """A tar.gz of files (name, bytes) or prepared headers (name, TarInfo), then `trailer`
    inside the gzip stream after the archive's end."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for name, item in members:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(item), 1.5  # a float mtime: a pax header
                tar.addfile(info, io.BytesIO(item))
    return gzip.compress(raw.getvalue() + trailer)


def contents(data: bytes) -> dict[str, bytes | None]:
    return {m.name: None if m.is_dir else b"".join(chunks)
            for m, chunks in read_members(io.BytesIO(data))}


def by_tarfile(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: None if m.isdir() else tar.extractfile(m).read() for m in tar}


FILES = [("a.json", b"{}"), ("folder/b.bin", bytes(range(256)) * 5), ("empty", b""),
         (LONG, b"long"), ("folder/\u00e9t\u00e9", b"summer")]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_plain_archives_read_as_tarfile_reads_them(fmt):
    data = tgz(FILES, fmt)
    assert contents(data) == by_tarfile(data) == dict(FILES)


def test_archives_of_gnu_tar_and_shutil_read_as_tarfile_reads_them(tmp_path):
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text("{}")
    (root / "weights.bin").write_bytes(bytes(5000))
    made = [tmp_path / "gnu.tar.gz"]
    subprocess.run(["tar", "czf", str(made[0]), "-C", str(tmp_path), "model"], check=True)
    made.append(shutil.make_archive(str(tmp_path / "py"), "gztar", root_dir=root))
    for path in made:
        data = Path(path).read_bytes()
        assert contents(data) == by_tarfile(data), path


def test_only_the_read_part_of_a_member_is_held():
    data = tgz([("big", bytes(5 << 20)), ("after", b"x")])
    seen = {}
    for member, chunks in read_members(io.BytesIO(data)):
        seen[member.name] = len(next(chunks))  # one chunk read, the rest skipped
    assert seen == {"big": 1 << 20, "after": 1}


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "config.json" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    return info


@pytest.mark.parametrize("kind, says", [
    (tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link"),
    (tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device"),
    (tarfile.FIFOTYPE, "pipe"), (tarfile.CONTTYPE, None),
])
def test_links_devices_and_pipes_are_refused_by_name(kind, says):
    data = tgz([("config.json", b"{}"), ("evil", _special("evil", kind))])
    if says is None:  # a contiguous file is a file
        assert contents(data)["evil"] == b""
        return
    with pytest.raises(NotPlainTar, match=f"'evil' is an? {says}"):
        contents(data)


def _raw_tar(members) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _summed(block: bytes) -> bytes:
    """A header block with its checksum recomputed."""
    block = block[:148] + b" " * 8 + block[156:]
    return block[:148] + f"{sum(block):06o}\0 ".encode() + block[156:]


def _with_header(block: bytes, data: bytes) -> bytes:
    """A ustar header block (checksum recomputed) and its padded data, then a member."""
    return _summed(block) + data + bytes(-len(data) % 512) + _raw_tar([("config.json", b"{}")])


def _header(kind: bytes, size: int) -> bytes:
    header = bytearray(_raw_tar([("x", b"")])[:512])
    header[124:136] = f"{size:011o}\0".encode()
    header[156:157] = kind
    return bytes(header)


def test_a_huge_pax_header_is_refused_before_it_is_read():
    size = MAX_HEADER_DATA + 1
    data = gzip.compress(_with_header(_header(b"x", size), bytes(size)))
    with pytest.raises(NotPlainTar, match="pax header of"):
        contents(data)


def pax_record(key: str, value: str) -> bytes:
    """One `length key=value\n` record; the length counts its own digits."""
    body = f" {key}={value}\n"
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return f"{length}{body}".encode()


def test_a_sparse_member_is_refused():
    records = pax_record("GNU.sparse.major", "1")
    data = gzip.compress(_with_header(_header(b"x", len(records)), records))
    with pytest.raises(NotPlainTar, match="sparse"):
        contents(data)


@pytest.mark.parametrize("damage, says", [
    (lambda t: t[:148] + b"0000000\0" + t[156:], "checksum"),
    (lambda t: t[:257] + b"\0" * 8 + t[265:], "no ustar header"),
    (lambda t: _summed(t[:124] + b"\x80" + bytes(11) + t[136:512]) + t[512:], "octal"),
    (lambda t: t[:700], "truncated"),
])
def test_damaged_headers_are_refused(damage, says):
    with pytest.raises(NotPlainTar, match=says):
        contents(gzip.compress(damage(_raw_tar([("config.json", b"{}")]))))


@pytest.mark.parametrize("trailer", [b"\1", bytes(70_000)])
def test_data_after_the_end_is_refused(trailer):
    with pytest.raises(NotPlainTar, match="after the end"):
        contents(tgz([("a", b"x")], trailer=trailer))


def test_record_padding_after_the_end_is_accepted():
    assert contents(tgz([("a", b"x")], trailer=bytes(20_000))) == {"a": b"x"}


@pytest.mark.parametrize("data", [b"\x1f\x8b" + bytes(30), gzip.compress(b"not a tar")[:-3]])
def test_what_is_not_a_gzip_stream_is_refused(data):
    with pytest.raises(NotPlainTar):
        contents(data)


class _Trickle(io.RawIOBase):
    """A stream that answers at most 100 bytes a read, as a network stream may."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(n if n >= 0 else len(self.data), 100)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_a_plain_tar_reads_with_the_offset_of_each_members_data(fmt):
    """Uncompressed (a WebDataset shard): each member's offset is where its bytes are, so a
    range read finds them again; a stream that answers in short reads reads the same."""
    raw = gzip.decompress(tgz(FILES, fmt))
    for stream in (io.BytesIO(raw), _Trickle(raw)):
        found = {}
        for member, chunks in read_members(stream, compressed=False):
            found[member.name] = b"".join(chunks)
            assert raw[member.offset:member.offset + member.size] == found[member.name]
        assert found == dict(FILES)


def test_a_plain_tar_says_where_it_is_damaged():
    raw = _raw_tar([("a.png", b"x" * 600), ("b.png", b"y")])
    with pytest.raises(NotPlainTar, match="truncated at byte 1000"):
        contents_plain(raw[:1000])
    with pytest.raises(NotPlainTar, match="no ustar header at byte 1536"):
        contents_plain(raw[:1536] + b"garbage!" * 64 + raw[2048:])


def contents_plain(data: bytes) -> dict[str, bytes]:
    return {m.name: b"".join(chunks) for m, chunks in read_members(io.BytesIO(data), False)}
