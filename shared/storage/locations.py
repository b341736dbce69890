"""Where a job may read its inputs: the configured storage, and the data-set roots.

`SALIENCY_DATASET_ROOTS` lists `[tenant=]uri` entries (`s3://bucket[/prefix]` or
`file:///dir`); an unscoped root is readable by every tenant. In the configured storage a
tenant reads its own area (`t/<tenant>/`) and, for inline inputs as in v1, any key outside
the service's private `t/` tree. Anything else — another bucket, `..`, `http(s)://`, a
symlink out of a root — is refused with a `SpecError` naming the field. Nothing here
fetches a URL: only storage backends are read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from shared.errors import InputError, SpecError
from shared.results.records import InputSource
from shared.settings import Settings, SettingsError
from shared.storage.file import FileStorage
from shared.storage.interface import Storage
from shared.storage.keys import tenant_prefix
from shared.storage.partreader import Heads, read_parts
from shared.storage.parts import Sample
from shared.storage.s3 import S3Storage


@dataclass(frozen=True)
class Root:
    """A readable place outside the configured storage, for one tenant or (None) for all."""

    tenant: str | None
    uri: str  # normalized: ends with "/"


def parse_roots(entries: tuple[str, ...]) -> tuple[Root, ...]:
    """`[tenant=]s3://bucket[/prefix]` or `[tenant=]file:///dir` entries, checked at start."""
    roots = []
    for entry in entries:
        tenant, sep, uri = entry.partition("=")
        if not sep:
            tenant, uri = "", entry
        parsed = urlparse(uri)
        if parsed.scheme not in ("s3", "file") or (parsed.scheme == "s3" and not parsed.netloc):
            raise SettingsError(f"SALIENCY_DATASET_ROOTS: {entry!r} must be [tenant=]s3://bucket"
                                "[/prefix] or [tenant=]file:///dir")
        if parsed.scheme == "file" and (parsed.netloc or not parsed.path.startswith("/")):
            raise SettingsError(f"SALIENCY_DATASET_ROOTS: {entry!r}: use file:///absolute/dir")
        roots.append(Root(tenant or None, uri.rstrip("/") + "/"))
    return tuple(roots)


@dataclass(frozen=True)
class Location:
    """One object a job reads: its backend, its key there, and the URI it was named by."""

    storage: Storage
    key: str
    uri: str


class Locator:
    """Turns the URIs a tenant names into readable locations, or refuses them."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.roots = parse_roots(settings.dataset_roots)
        self.heads = Heads()  # of the Parquet and Arrow files read here

    @functools.cache  # noqa: B019 - one Locator per process; a handful of roots
    def _root_storage(self, root: Root) -> Storage:
        parsed = urlparse(root.uri)
        if parsed.scheme == "file":
            return FileStorage(parsed.path)
        return S3Storage(parsed.netloc, parsed.path.strip("/"), self.settings.s3_endpoint_url,
                         self.settings.s3_public_endpoint_url)

    def locate(self, uri: str, tenant: str, field: str, *, own_area: bool = False) -> Location:
        """Where `uri` is, for `tenant`. `own_area`: in the configured storage, only the
        tenant's own `t/<tenant>/` area (data sets), else also keys outside `t/` (v1)."""
        parsed = urlparse(uri)
        if parsed.scheme not in ("s3", "file"):
            raise SpecError(field, "must be an s3:// or file:// URI in the configured storage "
                                   "or a data-set root (SALIENCY_DATASET_ROOTS)")
        if any(part == ".." for part in unquote(parsed.path).split("/")):
            raise SpecError(field, "must not contain '..'")
        try:
            key = self.storage.key_for_uri(uri)
        except ValueError:
            key = None
        if key is not None:
            own = tenant_prefix(tenant) + "/"
            if key.startswith(own) or (not own_area and not key.startswith("t/")):
                return Location(self.storage, key, uri)
            if key.startswith("t/"):
                raise SpecError(field, "names a private object of the service")
        for root in self.roots:
            if root.tenant not in (None, tenant):
                continue
            if (uri.rstrip("/") + "/").startswith(root.uri):
                storage = self._root_storage(root)
                try:
                    return Location(storage, storage.key_for_uri(uri), uri)
                except ValueError as e:
                    raise SpecError(field, str(e)) from None
        where = "your area of the configured storage" if own_area else "the configured storage"
        raise SpecError(field, f"is not in {where} or a data-set root readable by you")

    def read(self, tenant: str, source: InputSource, uri: str | None = None,
             field: str = "uri") -> bytes:
        """The bytes of an input (or of `uri`, e.g. its mask): an upload by its key, a part of
        a larger object, else its URI located for `tenant`; `FileNotFoundError` or
        `InputError` if it cannot be read, `StorageError` if the backend fails."""
        if uri is None and source.key is not None:
            return self.storage.get(source.key)
        if uri is None and source.part is not None:
            (sample,) = self.read_parts(tenant, [source])
            if isinstance(sample, str):
                raise InputError(sample)
            return sample.image
        location = self.locate(uri or source.uri or "", tenant, field)
        return location.storage.get(location.key)

    def read_parts(self, tenant: str, sources: Sequence[InputSource]) -> list[Sample | str]:
        """The samples of inputs kept inside larger objects, or why each cannot be had: each
        object located for `tenant` as a data set is, and read with as few range reads as
        its parts allow (`shared.storage.partreader`)."""
        out: list[Sample | str] = [""] * len(sources)
        by_object: dict[str, list[int]] = {}
        for i, source in enumerate(sources):
            by_object.setdefault(source.part.object, []).append(i)
        for uri, indices in by_object.items():
            try:
                location = self.locate(uri, tenant, "dataset", own_area=True)
            except SpecError as e:
                samples: list[Sample | str] = [e.message] * len(indices)
            else:
                samples = read_parts(location.storage, location.key,
                                     [sources[i].part for i in indices],
                                     [sources[i].name for i in indices], self.heads)
            for i, sample in zip(indices, samples, strict=True):
                out[i] = sample
        return out

    def prefix(self, uri: str, tenant: str, field: str) -> Location:
        """A folder to list (a data-set prefix): its backend and key prefix ending in `/`."""
        loc = self.locate(uri.rstrip("/") + "/x", tenant, field, own_area=True)
        return Location(loc.storage, loc.key[:-1], uri)
