"""Object storage behind one small interface: local files (`file://`) or S3 (`s3://`).

Keys are relative, `/`-separated paths such as `t/acme/jobs/<id>/inputs/000000.png`. Two
kinds of failure, as the worker and the API treat them:
- `FileNotFoundError`: no such object (or a folder where an object was expected) — the
  caller's problem: an item fails, a request is answered 404 or 400;
- `StorageError` (an `OSError`): the backend is unreachable, refused a write, or is full —
  transient: a task retries, a request is answered 503.
The backends are `shared.storage.file.FileStorage` and `shared.storage.s3.S3Storage`;
`make_storage` picks the one `STORAGE_URL` names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from shared.settings import Settings

MAX_KEY_CHARS = 1024


class StorageError(OSError):
    """The storage backend is unreachable, refused an operation, or is full."""


def check_key(key: str) -> str:
    """A key must be a plain relative path: no `..`, `.`, empty or absolute parts, no control
    characters."""
    if (
        not key
        or len(key) > MAX_KEY_CHARS
        or key.startswith("/")
        or "\\" in key
        or any(ord(c) < 32 or c == "\x7f" for c in key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise ValueError(f"invalid storage key {key[:100]!r}")
    return key


class Reader(Protocol):
    """What `Storage.reader` answers: `read(n)` gives at most `n` bytes, `b""` at the end."""

    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class Storage(ABC):
    """Where inputs, model artifacts and results live."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write (or overwrite) one object."""

    @abstractmethod
    def put_stream(self, key: str, stream: BinaryIO, content_type: str | None = None) -> None:
        """Write one object from a file object, without holding it in memory."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Read one object; `FileNotFoundError` if there is none."""

    @abstractmethod
    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes `start` to `stop` (exclusive) of one object."""

    @abstractmethod
    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        """The last `length` bytes of one object (all of it if shorter) and its size, in one
        read: where a Parquet file's footer is."""

    @abstractmethod
    def reader(self, key: str) -> Reader:
        """One object streamed from its start in a single read (one GET on S3), for a caller
        that walks it once, holding a block at a time; close it when done."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; missing objects are ignored."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix`, in key order."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI naming `key` (what a JSON job's `inputs` may contain)."""

    @abstractmethod
    def key_for_uri(self, uri: str) -> str:
        """The key a URI names; `ValueError` if it is not inside this storage."""

    @abstractmethod
    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL anyone can GET for a while, or None when the API must serve the object."""

    @abstractmethod
    def check(self) -> None:
        """Raise `StorageError` unless the storage is reachable (the readiness probe's check:
        one attempt, short timeouts)."""

    def exists(self, key: str) -> bool:
        try:
            self.get_range(key, 0, 1)
        except FileNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix` (which must end with `/`); returns how many."""
        if not prefix.endswith("/"):
            raise ValueError("a prefix to delete must end with '/'")
        n = 0
        for key in list(self.list(prefix)):
            self.delete(key)
            n += 1
        return n


def make_storage(settings: Settings) -> Storage:
    """The backend `STORAGE_URL` names: `file://<path>` or `s3://<bucket>[/<prefix>]`."""
    from shared.storage.file import FileStorage
    from shared.storage.s3 import S3Storage

    url = settings.storage_url
    if url.startswith("file://"):
        return FileStorage(url[len("file://"):] or ".")
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"STORAGE_URL={url!r} names no bucket")
        return S3Storage(bucket, prefix, settings.s3_endpoint_url,
                         settings.s3_public_endpoint_url)
    raise ValueError(f"STORAGE_URL={url!r} must start with file:// or s3://")


@dataclass(frozen=True)
class LongLine:
    """A line longer than the cap `iter_lines` was given: skipped unread, only its length kept."""

    size: int


def iter_lines(storage: Storage, key: str, max_line: int,
               block: int = 8 << 20) -> Iterator[bytes | LongLine]:
    """The lines of an object, read in ranged blocks: a manifest of any size is streamed,
    never held in memory whole. A line longer than `max_line` bytes is never held either:
    it comes out as a `LongLine`, so memory stays within a block and one line."""
    offset, head, skipped = 0, b"", None  # skipped: the bytes of a long line seen so far
    while True:
        data = storage.get_range(key, offset, offset + block)
        offset += len(data)
        *lines, tail = data.split(b"\n")
        for line in lines:
            if skipped is not None:
                yield LongLine(skipped + len(line))
            elif len(head) + len(line) > max_line:
                yield LongLine(len(head) + len(line))
            else:
                yield head + line
            head, skipped = b"", None
        if skipped is not None:
            skipped += len(tail)
        elif len(head) + len(tail) > max_line:
            head, skipped = b"", len(head) + len(tail)
        else:
            head += tail
        if len(data) < block:
            break
    if skipped is not None:
        yield LongLine(skipped)
    elif head:
        yield head
