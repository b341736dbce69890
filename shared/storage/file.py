"""The local-files backend (`file://`): keys are paths under a root folder; writes go to a
temporary file renamed into place, so a reader never sees half an object."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from shared.storage.interface import Reader, Storage, StorageError, check_key


class FileStorage(Storage):
    """A directory on local disk; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def _inside(self, path: str | Path) -> bool:
        """Whether `path`, its symbolic links followed, is the root or under it."""
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        return real == root or real.startswith(root + os.sep)

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        if not self._inside(path):
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

    def _open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except (IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(f"{key!r} is a folder, not a file") from None
        except PermissionError:
            raise FileNotFoundError(f"{key!r} is not readable by the service") from None
        except FileNotFoundError:
            raise FileNotFoundError(f"no such object {key!r}") from None
        except OSError as e:
            raise StorageError(f"cannot read {key!r} under {self.root}: {e}") from e

    def _read(self, key: str, start: int = 0, stop: int | None = None) -> bytes:
        with self._open(key) as f:
            try:
                f.seek(start)
                return f.read() if stop is None else f.read(max(0, stop - start))
            except IsADirectoryError:
                raise FileNotFoundError(f"{key!r} is a folder, not a file") from None
            except OSError as e:
                raise StorageError(f"cannot read {key!r} under {self.root}: {e}") from e

    def get(self, key: str) -> bytes:
        return self._read(key)

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        return self._read(key, start, stop)

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        with self._open(key) as f:
            try:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - length))
                return f.read(), size
            except OSError as e:
                raise StorageError(f"cannot read {key!r} under {self.root}: {e}") from e

    def reader(self, key: str) -> Reader:
        return self._open(key)

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
        """Keys under `directory` in key order (a folder sorts as its name plus `/`). A link
        to a folder is not followed, and a link to a file out of the root is not listed."""
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        named = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e)
                       for e in entries if not e.name.startswith(".tmp-"))
        for name, entry in named:
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), rel + name)
            elif entry.is_file() and (not entry.is_symlink() or self._inside(entry.path)):
                yield rel + name

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix`; `FileNotFoundError` if its folder is a link out of the root."""
        base = prefix.rpartition("/")[0]
        start = self.root / base if base else self.root
        if not self._inside(start):
            raise FileNotFoundError(f"{prefix!r} leads out of {self.root} (a symbolic link)")
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
