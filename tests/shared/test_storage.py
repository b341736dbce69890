"""The same tests for both storage backends: local files and S3 (a moto server on loopback)."""

from __future__ import annotations

import uuid

import pytest
import requests

from devstack import S3_TEST_CREDENTIALS, create_bucket
from shared.settings import Settings
from shared.storage.interface import StorageError, make_storage
from shared.storage.s3 import S3Storage


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "file":
        return make_storage(Settings(storage_url=tmp_path.as_uri()))
    endpoint = request.getfixturevalue("s3_server")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint, bucket)
    return make_storage(Settings(storage_url=f"s3://{bucket}/some/prefix",
                                 s3_endpoint_url=endpoint))


def test_put_get_overwrite_list_delete(storage):
    storage.put("a/b/one.bin", b"1")
    storage.put("a/b/one.bin", b"one")
    storage.put("a/two.bin", b"two", "application/octet-stream")
    storage.put("c.bin", b"three")
    assert storage.get("a/b/one.bin") == b"one"
    assert storage.exists("a/two.bin") and not storage.exists("a/none.bin")
    assert sorted(storage.list("a/")) == ["a/b/one.bin", "a/two.bin"]
    assert sorted(storage.list()) == ["a/b/one.bin", "a/two.bin", "c.bin"]
    storage.delete("a/two.bin")
    storage.delete("a/two.bin")  # missing: ignored
    assert sorted(storage.list()) == ["a/b/one.bin", "c.bin"]


def test_a_missing_object_is_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.get("nothing/here.png")


def test_ranges_tails_and_streams_read_what_they_name(storage):
    data = bytes(range(256)) * 40
    storage.put("big.bin", data)
    storage.put("empty.bin", b"")
    assert storage.get_range("big.bin", 100, 3000) == data[100:3000]
    assert storage.get_tail("big.bin", 1000) == (data[-1000:], len(data))
    assert storage.get_tail("big.bin", 1 << 20) == (data, len(data))
    assert storage.get_tail("empty.bin", 10) == (b"", 0)
    reader = storage.reader("big.bin")
    try:
        blocks = iter(lambda: reader.read(777), b"")
        assert b"".join(blocks) == data
    finally:
        reader.close()
    for read in (lambda: storage.get_tail("none.bin", 8), lambda: storage.reader("none.bin")):
        with pytest.raises(FileNotFoundError):
            read()


def test_uris_round_trip_and_foreign_uris_are_refused(storage):
    assert storage.key_for_uri(storage.uri("x/y.png")) == "x/y.png"
    for foreign in ("s3://other-bucket/x.png", "file:///etc/passwd", "http://example.com/x.png"):
        with pytest.raises(ValueError):
            storage.key_for_uri(foreign)


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/../../b", "", "a/./b"])
def test_keys_cannot_escape(storage, key):
    with pytest.raises(ValueError):
        storage.put(key, b"x")


def test_presigned_urls_for_s3_only(storage):
    storage.put("p/q.txt", b"presigned")
    url = storage.presigned_url("p/q.txt", 60)
    if isinstance(storage, S3Storage):
        assert requests.get(url, timeout=10).content == b"presigned"
    else:
        assert url is None  # the API serves local files itself


def test_check_reports_an_unreachable_backend(storage):
    storage.check()
    if isinstance(storage, S3Storage):
        with pytest.raises(StorageError):
            S3Storage("no-such-bucket-here", "", storage.client.meta.endpoint_url).check()


def test_presigned_urls_are_signed_for_the_public_endpoint(s3_server, monkeypatch):
    """The service reaches S3 at one address and clients at another (containers: minio:9000,
    this machine: 127.0.0.1:9000). Here `localhost` and `127.0.0.1` name the same moto server;
    a URL signed for the public name works there. (moto does not check signatures; the host is
    part of what SigV4 signs, as `X-Amz-SignedHeaders=host` says.)"""
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    public = s3_server.replace("127.0.0.1", "localhost")
    create_bucket(s3_server, "public-endpoint")
    settings = Settings(storage_url="s3://public-endpoint/p", s3_endpoint_url=s3_server,
                        s3_public_endpoint_url=public)
    storage = make_storage(settings)
    storage.put("a/b.png", b"pixels")
    url = storage.presigned_url("a/b.png", 60)
    assert url.startswith(f"{public}/public-endpoint/p/a/b.png?")
    assert "X-Amz-SignedHeaders=host" in url
    assert requests.get(url, timeout=10).content == b"pixels"
    internal = make_storage(Settings(storage_url="s3://public-endpoint/p",
                                     s3_endpoint_url=s3_server))
    assert internal.presigned_url("a/b.png", 60).startswith(f"{s3_server}/public-endpoint/")


def test_lines_come_out_whole_across_blocks_and_a_long_line_only_as_its_length(tmp_path):
    from shared.storage.interface import LongLine, iter_lines

    storage = make_storage(Settings(storage_url=tmp_path.as_uri()))
    lines = [b"a", b"", b"x" * 30, b"bb", b"y" * 11, b"c" * 10, b"z" * 25]
    storage.put("m.jsonl", b"\n".join(lines))
    expected = [LongLine(len(ln)) if len(ln) > 10 else ln for ln in lines]
    for block in (1, 3, 7, 10, 11, 64):
        assert list(iter_lines(storage, "m.jsonl", 10, block)) == expected, block


def test_a_huge_manifest_line_is_never_held_in_memory(tmp_path):
    """A 32 MiB line read in 1 MiB blocks under a 64 KiB cap: memory stays within a few
    blocks, not the line (it grew by several times the line before the cap)."""
    import tracemalloc

    from shared.storage.interface import LongLine, iter_lines

    storage = make_storage(Settings(storage_url=tmp_path.as_uri()))
    huge = 32 << 20
    with open(tmp_path / "m.jsonl", "wb") as f:
        f.write(b'{"uri": "a.png"}\n')
        for _ in range(huge >> 20):
            f.write(b"[" * (1 << 20))
        f.write(b'\n{"uri": "b.png"}\n')
    tracemalloc.start()
    try:
        out = list(iter_lines(storage, "m.jsonl", 64 << 10, block=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == [b'{"uri": "a.png"}', LongLine(huge), b'{"uri": "b.png"}']
    assert peak < 4 << 20, peak


def test_a_listing_never_follows_a_link_out_of_the_root(tmp_path):
    """A folder that is a link out of the root (`etc -> /etc`), or under such a link, is
    refused as a prefix; a link to a file outside is not listed; links inside still are."""
    from shared.storage.file import FileStorage

    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.png").write_bytes(b"x")
    (outside / "deep" / "more.png").write_bytes(b"x")
    storage = FileStorage(tmp_path / "root")
    storage.put("data/cat/a.png", b"a")
    (storage.root / "data" / "cat" / "escape.png").symlink_to(outside / "secret.png")
    (storage.root / "data" / "cat" / "alias.png").symlink_to(storage.root / "data/cat/a.png")
    (storage.root / "data" / "etc").symlink_to(outside, target_is_directory=True)
    (storage.root / "etc").symlink_to(outside, target_is_directory=True)
    assert list(storage.list("data/")) == ["data/cat/a.png", "data/cat/alias.png"]
    assert list(storage.list("")) == ["data/cat/a.png", "data/cat/alias.png"]
    assert list(storage.list("et")) == []
    for prefix in ("etc/", "etc/deep/", "data/etc/", "data/etc/deep/x", "etc/secret"):
        with pytest.raises(FileNotFoundError, match="leads out of .* symbolic link"):
            list(storage.list(prefix))


def test_a_range_past_the_end_is_empty(storage):
    """As reading a file past its end: the block after a last full one, or an empty object's
    first block, is nothing (S3 answers 416 there, which is not a failure of the storage)."""
    storage.put("eight.bin", b"12345678")
    storage.put("empty.bin", b"")
    assert storage.get_range("eight.bin", 4, 16) == b"5678"
    assert storage.get_range("eight.bin", 8, 16) == b""
    assert storage.get_range("empty.bin", 0, 8) == b""
    with pytest.raises(FileNotFoundError):
        storage.get_range("none.bin", 0, 8)
