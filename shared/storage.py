"""Object storage behind one small interface: local files (`file://`) or S3 (`s3://`).

Keys are relative, `/`-separated paths such as `t/acme/jobs/<id>/inputs/000000.png`. A missing
object is always `FileNotFoundError`; any other failure of the backend is `StorageError` (an
`OSError`, treated as transient by the worker).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from shared.settings import Settings

_KEY_RE = re.compile(r"^[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*$")


class StorageError(OSError):
    """The storage backend is unreachable or refused an operation."""


def check_key(key: str) -> str:
    """A key must be a plain relative path: no `..`, no empty or absolute parts."""
    if not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(ABC):
    """Where inputs, model artifacts and results live."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write (or overwrite) one object."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Read one object; `FileNotFoundError` if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; missing objects are ignored."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix`."""

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


class FileStorage(Storage):
    """A directory on local disk; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_for_uri(self, uri: str) -> str:
        if not uri.startswith("file://"):
            raise ValueError("must be a file:// URI inside the configured storage")
        path = Path(urlparse(uri).path).absolute()
        try:
            return check_key(path.relative_to(self.root).as_posix())
        except ValueError:
            raise ValueError(f"must name a file under {self.root.as_uri()}") from None

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return None

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".tmp-ready-{uuid.uuid4().hex}"
        try:
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
                retries={"max_attempts": 3, "mode": "standard"},
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
                raise FileNotFoundError(f"no object {key!r} in s3://{self.bucket}") from None
            raise StorageError(f"S3 {code or 'error'} on {key!r}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"S3 unreachable ({key!r}): {e}") from e

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self._call(key, self.client.put_object, Key=self._full(key), Body=data, **extra)

    def get(self, key: str) -> bytes:
        response = self._call(key, self.client.get_object, Key=self._full(key))
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
