"""The same tests for both storage backends: local files and S3 (a moto server on loopback)."""

from __future__ import annotations

import uuid

import pytest
import requests

from devstack import create_bucket
from shared.settings import Settings
from shared.storage import S3Storage, StorageError, make_storage


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
