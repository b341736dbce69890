"""Object storage behind one small interface: local files (`file://`) or S3 (`s3://`).

Keys are relative, `/`-separated paths such as `t/acme/jobs/<id>/inputs/000000.png`. Two
kinds of failure, as the worker and the API treat them:
- `FileNotFoundError`: no such object (or a folder where an object was expected) — the
  caller's problem: an item fails, a request is answered 404 or 400;
- `StorageError` (an `OSError`): the backend is unreachable, refused a write, or is full —
  transient: a task retries, a request is answered 503.
Every S3 call has short connect and read timeouts and a bounded number of retries, so a
stalled backend is an error within seconds, never a hang.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from shared.settings import Settings

MAX_KEY_CHARS = 1024
S3_CONNECT_TIMEOUT_S = 3
S3_READ_TIMEOUT_S = 10
S3_MAX_ATTEMPTS = 2


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
        """Raise `StorageError` unless the storage is reachable (readiness probe)."""

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


class FileStorage(Storage):
    """A directory on local disk; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        if real != root and not real.startswith(root + os.sep):
            raise FileNotFoundError(f"{key!r} leads out of {self.root} (a symbolic link)")
        return path

    def _write(self, key: str, write) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as e:
            raise StorageError(f"cannot write {key!r} under {self.root}: {e}") from e
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"cannot write {key!r} under {self.root}: {e}") from e
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._write(key, lambda f: f.write(data))

    def put_stream(self, key: str, stream: BinaryIO, content_type: str | None = None) -> None:
        self._write(key, lambda f: shutil.copyfileobj(stream, f, 1 << 20))

    def _read(self, key: str, start: int = 0, stop: int | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read() if stop is None else f.read(max(0, stop - start))
        except (IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(f"{key!r} is a folder, not a file") from None
        except PermissionError:
            raise FileNotFoundError(f"{key!r} is not readable by the service") from None
        except FileNotFoundError:
            raise FileNotFoundError(f"no such object {key!r}") from None
        except OSError as e:
            raise StorageError(f"cannot read {key!r} under {self.root}: {e}") from e

    def get(self, key: str) -> bytes:
        return self._read(key)

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        return self._read(key, start, stop)

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as e:
            raise StorageError(f"cannot delete {key!r}: {e}") from e

    def _walk(self, directory: Path, rel: str) -> Iterator[str]:
        """Keys under `directory` in key order (a folder sorts as its name plus `/`)."""
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        named = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e)
                       for e in entries if not e.name.startswith(".tmp-"))
        for name, entry in named:
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), rel + name)
            elif entry.is_file():
                yield rel + name

    def list(self, prefix: str = "") -> Iterator[str]:
        base = prefix.rpartition("/")[0]
        start = self.root / base if base else self.root
        for key in self._walk(start, base + "/" if base else ""):
            if key.startswith(prefix):
                yield key

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError("a prefix to delete must end with '/'")
        path = self._path(prefix.rstrip("/"))
        n = sum(1 for _ in self.list(prefix))
        shutil.rmtree(path, ignore_errors=True)
        return n

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_for_uri(self, uri: str) -> str:
        if not uri.startswith("file://"):
            raise ValueError("must be a file:// URI inside the configured storage")
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError("must be a file:///absolute/path URI")
        # `uri()` percent-encodes (`Path.as_uri`): decode, so that a name with a space or a
        # non-ASCII letter comes back to its own key (and `%2e%2e` meets `check_key` as `..`).
        path = Path(unquote(parsed.path)).absolute()
        try:
            return check_key(path.relative_to(self.root).as_posix())
        except ValueError:
            raise ValueError(f"must name a file under {self.root.as_uri()}") from None

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return None

    def check(self) -> None:
        probe = self.root / f".tmp-ready-{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StorageError(f"storage directory {self.root} is not writable: {e}") from e


class S3Storage(Storage):
    """A bucket (and optional prefix) of any S3-compatible service, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 public_endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        session = boto3.session.Session()
        self.client = self._client(session, endpoint_url)
        # Presigned URLs name the host they are signed for: sign for the address clients use
        # (`SALIENCY_S3_PUBLIC_ENDPOINT_URL`) when it differs from the one the service uses.
        self.signer = (self._client(session, public_endpoint_url)
                       if public_endpoint_url and public_endpoint_url != endpoint_url
                       else self.client)

    @staticmethod
    def _client(session, endpoint_url: str | None):
        from botocore.config import Config

        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=Config(
                connect_timeout=S3_CONNECT_TIMEOUT_S,
                read_timeout=S3_READ_TIMEOUT_S,
                retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
                signature_version="s3v4",
                s3={"addressing_style": "path"} if endpoint_url else {},
            ),
        )

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, key: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"no such object {key!r} in s3://{self.bucket}") from None
            if code in ("AccessDenied", "403") and fn.__name__ in ("get_object", "head_object"):
                raise FileNotFoundError(f"{key!r} in s3://{self.bucket} is not readable by the "
                                        "service") from None
            raise StorageError(f"S3 {code or 'error'} on {key!r}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"S3 unreachable ({key!r}): {e}") from e

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self._call(key, self.client.put_object, Key=self._full(key), Body=data, **extra)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str | None = None) -> None:
        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}

        def upload(Bucket: str, **kw):  # noqa: N803 - boto3's own argument name
            return self.client.upload_fileobj(stream, Bucket, **kw)

        self._call(key, upload, Key=self._full(key), **extra)

    def get(self, key: str) -> bytes:
        response = self._call(key, self.client.get_object, Key=self._full(key))
        return response["Body"].read()

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        response = self._call(key, self.client.get_object, Key=self._full(key),
                              Range=f"bytes={start}-{stop - 1}")
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self.client.head_object, Key=self._full(key))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Key=self._full(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        token: str | None = None
        while True:
            kwargs = {"Prefix": full, **({"ContinuationToken": token} if token else {})}
            page = self._call(prefix, self.client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError("a prefix to delete must end with '/'")
        keys, n = [], 0
        for key in self.list(prefix):
            keys.append({"Key": self._full(key)})
            if len(keys) == 1000:
                n += self._delete_batch(prefix, keys)
                keys = []
        return n + (self._delete_batch(prefix, keys) if keys else 0)

    def _delete_batch(self, prefix: str, keys: list[dict[str, str]]) -> int:
        self._call(prefix, self.client.delete_objects, Delete={"Objects": keys, "Quiet": True})
        return len(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_for_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        root = f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or not uri.startswith(root):
            raise ValueError(f"must be an s3:// URI under {root}")
        return check_key(uri[len(root):])

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return self.signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=expires_s,
        )

    def check(self) -> None:
        try:
            self._call("", lambda **kw: self.client.head_bucket(**kw))
        except FileNotFoundError:
            raise StorageError(f"bucket {self.bucket!r} does not exist") from None


def make_storage(settings: Settings) -> Storage:
    """The backend `STORAGE_URL` names: `file://<path>` or `s3://<bucket>[/<prefix>]`."""
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


def iter_lines(storage: Storage, key: str, block: int = 8 << 20) -> Iterator[bytes]:
    """The lines of an object, read in ranged blocks: a manifest of any size is streamed,
    never held in memory whole."""
    offset, rest = 0, b""
    while True:
        data = storage.get_range(key, offset, offset + block)
        offset += len(data)
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        yield from lines
        if len(data) < block:
            break
    if rest:
        yield rest
