"""The S3 backend (`s3://bucket/prefix`; AWS, MinIO and other S3-compatible servers). Every
call has short connect and read timeouts and a bounded number of retries, so a stalled
backend is an error within seconds, never a hang. The readiness check has a client of its own:
one attempt, shorter timeouts."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import urlparse

from shared.storage.interface import Reader, Storage, StorageError, check_key

S3_CONNECT_TIMEOUT_S = 3
S3_READ_TIMEOUT_S = 10
S3_MAX_ATTEMPTS = 2
CHECK_TIMEOUT_S = 2  # connect, and read, of the readiness check's single attempt


class S3Storage(Storage):
    """A bucket (and optional prefix) of any S3-compatible service, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 public_endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        session = boto3.session.Session()
        self.client = self._client(session, endpoint_url)
        # Presigned URLs name the host they are signed for: sign for the address clients use
        # (`SALIENCY_S3_PUBLIC_ENDPOINT_URL`) when it differs from the one the service uses.
        self.signer = (self._client(session, public_endpoint_url)
                       if public_endpoint_url and public_endpoint_url != endpoint_url
                       else self.client)

    @staticmethod
    def _client(session, endpoint_url: str | None, timeout_s: tuple[int, int] = (
            S3_CONNECT_TIMEOUT_S, S3_READ_TIMEOUT_S), retries: int = S3_MAX_ATTEMPTS):
        from botocore.config import Config

        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=Config(
                connect_timeout=timeout_s[0],
                read_timeout=timeout_s[1],
                retries={"max_attempts": retries, "mode": "standard"},
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
            if code == "InvalidRange":  # a range from the end on (an empty object's)
                raise EOFError(f"{key!r} in s3://{self.bucket} ends before the range") from None
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
        try:
            response = self._call(key, self.client.get_object, Key=self._full(key),
                                  Range=f"bytes={start}-{stop - 1}")
        except EOFError:  # as reading past the end of a file: nothing
            return b""
        return response["Body"].read()

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        try:
            response = self._call(key, self.client.get_object, Key=self._full(key),
                                  Range=f"bytes=-{length}")
        except StorageError as e:
            if "InvalidRange" in str(e):  # an empty object has no last byte to range over
                return b"", 0
            raise
        total = response.get("ContentRange", "").rpartition("/")[2]
        data = response["Body"].read()
        return data, int(total) if total.isdigit() else len(data)

    def reader(self, key: str) -> Reader:
        response = self._call(key, self.client.get_object, Key=self._full(key))
        return _BodyReader(response["Body"], key)

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

    @functools.cached_property
    def _checker(self):
        """The readiness check's client: one attempt with short timeouts, so that a check
        of a stalled backend ends in seconds (the API waits for it even less)."""
        import boto3

        return self._client(boto3.session.Session(), self.endpoint_url,
                            (CHECK_TIMEOUT_S, CHECK_TIMEOUT_S), retries=0)

    def check(self) -> None:
        try:
            self._call("", lambda **kw: self._checker.head_bucket(**kw))
        except FileNotFoundError:
            raise StorageError(f"bucket {self.bucket!r} does not exist") from None


class _BodyReader:
    """An S3 object's streamed body, its read errors (a stalled or cut connection) made
    `StorageError`s like those of every other call."""

    def __init__(self, body, key: str) -> None:
        self.body, self.key = body, key

    def read(self, n: int) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        try:
            return self.body.read(n)
        except (BotoCoreError, HTTPError, OSError) as e:
            raise StorageError(f"S3 read of {self.key!r} failed: {e}") from e

    def close(self) -> None:
        self.body.close()
