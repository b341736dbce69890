"""WebDataset tar shards as a data set: brace patterns, samples as webdataset groups them, and
what a sample's members say.

A shard is a plain tar; a sample is the run of members sharing a key, webdataset's rule: the
file name up to the first dot of its last path part (`a/b/x.seg.png`: key `a/b/x`, extension
`seg.png`, lower-cased). Its image is its `jpg`, `jpeg`, `png`, `webp` or `npy` member; its
label the member whose extension is the label field (`cls`: an integer or a class name), else
that field of its `json` member, which may also hold a `box` and a `mask` URI as a manifest
line does; its mask may also be a `mask.png` member. The service reads tar headers itself
(`shared.storage.tararchive`) and decodes only those members: nothing in a shard ever runs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlparse

from shared.errors import InputError, SpecError
from shared.jsonio import loads
from shared.results.records import InputSource
from shared.spec.inputs import parse_uri
from shared.storage.interface import Reader
from shared.storage.parts import IMAGE, JSON, LABEL, MASK, TAR, Part, Sample, Span
from shared.storage.tararchive import NotPlainTar, read_members

MAX_SHARDS = 100_000  # shards a brace pattern may name
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "npy")
MASK_EXTENSION = "mask.png"
DEFAULT_LABEL_FIELD = "cls"
MAX_IMAGE_BYTES = 64 << 20  # an image or mask member larger than this fails its sample
MAX_META_BYTES = 1 << 20  # a label or json member larger than this fails its sample
_FIELD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_RANGE = re.compile(r"^(-?[0-9]+)\.\.(-?[0-9]+)$")
_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]+)$")  # webdataset's `base_plus_ext`


def parse_label_field(raw: object, where: str) -> str:
    """The extension of a sample's label member, also the field read from its `json`."""
    reserved = {*IMAGE_EXTENSIONS, "json", MASK_EXTENSION}
    if not isinstance(raw, str) or not _FIELD.match(raw) or raw.lower() in reserved:
        raise SpecError(where, "must be a member extension such as \"cls\" (letters, digits, "
                               f"_ . -; not {', '.join(sorted(reserved))})")
    return raw.lower()


class _Numbers(Sequence[str]):
    """The numbers of a range group (`{000..099}`), zero-padded to `width`, made on demand."""

    def __init__(self, numbers: range, width: int) -> None:
        self.numbers, self.width = numbers, width

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return f"{self.numbers[i]:0{self.width}d}"


def _groups(pattern: str, where: str) -> list[str | Sequence[str]]:
    """The pattern as literal text and brace groups (`{a,b}` or `{000..099}`)."""
    parts: list[str | Sequence[str]] = []
    for i, piece in enumerate(re.split(r"(\{[^{}]*\})", pattern)):
        if i % 2 == 0:
            if "{" in piece or "}" in piece:
                raise SpecError(where, "has an unbalanced or nested brace; use {a,b} or "
                                       "{000..099}")
            parts.append(piece)
            continue
        body = piece[1:-1]
        match = _RANGE.match(body)
        if match:
            first, last = match.groups()
            padded = any(n.startswith(("0", "-0")) for n in (first, last) if n not in ("0", "-0"))
            width = max(len(first), len(last)) if padded else 0
            a, b = int(first), int(last)
            count = abs(b - a) + 1
            if count > MAX_SHARDS:
                raise SpecError(where, f"{piece} names {count:,} shards, more than the limit "
                                       f"of {MAX_SHARDS:,}")
            step = 1 if b >= a else -1
            parts.append(_Numbers(range(a, b + step, step), width))
        elif "," in body and all(alt and "/" not in alt and alt != ".." for alt in
                                 body.split(",")):
            parts.append(body.split(","))
        else:
            raise SpecError(where, f"{piece} must be a list {{a,b,c}} (no '/') or a range "
                                   "{000..099}")
    return parts


def shard_count(pattern: str, where: str) -> int:
    """How many shards a brace pattern names (1 without braces); over `MAX_SHARDS` refused."""
    count = 1
    for part in _groups(pattern, where):
        if not isinstance(part, str):
            count *= len(part)
    if count > MAX_SHARDS:
        raise SpecError(where, f"names {count:,} shards, more than the limit of "
                               f"{MAX_SHARDS:,}; split the data set or name a prefix")
    return count


def is_pattern(uri: str) -> bool:
    """A brace pattern or a single `.tar`, as opposed to a prefix to list."""
    return "{" in uri or urlparse(uri).path.endswith(".tar")


def expand(pattern: str, where: str) -> Iterator[str]:
    """The shard URIs a brace pattern names, in order (webdataset's `braceexpand`), one at a
    time."""
    groups = _groups(pattern, where)

    def names(i: int, head: str) -> Iterator[str]:
        if i == len(groups):
            yield head
        elif isinstance(groups[i], str):
            yield from names(i + 1, head + groups[i])
        else:
            for choice in groups[i]:
                yield from names(i + 1, head + choice)

    return names(0, "")


def base_of(uri: str) -> str:
    """The folder a pattern's or prefix's shards are named relative to (ends with `/`)."""
    if is_pattern(uri):
        return uri.split("{", 1)[0].rpartition("/")[0] + "/"
    return uri.rstrip("/") + "/"


def shard_id(shard_uri: str, base: str) -> str:
    """A shard's name in item ids: its path from the base folder, without `.tar`."""
    rel = shard_uri[len(base):] if shard_uri.startswith(base) else posixpath.basename(shard_uri)
    return rel[:-len(".tar")] if rel.endswith(".tar") else rel


def split_name(name: str) -> tuple[str, str] | None:
    """(key, lower-cased extension) of a member name, or None for a name without one."""
    match = _NAME.match(name)
    return (match.group(1), match.group(2).lower()) if match else None


class _Sample:
    """The members of one sample seen so far while indexing a shard."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.members: dict[str, Span] = {}
        self.error: str | None = None

    def add(self, ext: str, offset: int, size: int) -> None:
        if ext in self.members and self.error is None:
            self.error = f"two members with extension {ext!r}"
        self.members[ext] = (offset, offset + size)

    def source(self, shard: str, sid: str, label_field: str) -> InputSource:
        name, item_id = f"{shard}#{self.key}", f"{sid}/{self.key}"
        image = next((ext for ext in IMAGE_EXTENSIONS if ext in self.members), None)
        error = self.error
        if image is None and error is None:
            error = (f"has no image member ({', '.join(IMAGE_EXTENSIONS)}); its members: "
                     f"{', '.join(sorted(self.members))[:200]}")
        roles = {IMAGE: image, LABEL: label_field, JSON: "json", MASK: MASK_EXTENSION}
        chosen = {role: self.members[ext] for role, ext in roles.items()
                  if ext in self.members}
        for role, (start, stop) in chosen.items():
            limit = MAX_IMAGE_BYTES if role in (IMAGE, MASK) else MAX_META_BYTES
            if stop - start > limit and error is None:
                error = f"its {role} member is {stop - start:,} bytes, more than {limit:,}"
        if error is not None:
            return InputSource(name=name, id=item_id, error=f"{name}: {error}")
        span = (min(a for a, _ in chosen.values()), max(b for _, b in chosen.values()))
        return InputSource(name=name, id=item_id, part=Part(
            TAR, shard, span, members=chosen, label=label_field))


def index_shard(open_shard: Callable[[], Reader], shard: str, sid: str,
                label_field: str) -> Iterator[InputSource]:
    """The samples of one shard, streamed from one read of its headers (member data is
    skipped, never held). A shard that cannot be read — missing, not a plain tar, cut short —
    ends with one failed item named by the shard that says why: the samples after the damage
    cannot be found; those before it are read as usual."""
    current: _Sample | None = None
    try:
        reader = open_shard()
    except FileNotFoundError as e:
        yield InputSource(name=shard, id=sid, error=f"{shard}: {e}")
        return
    try:
        for member, _ in read_members(reader, compressed=False):
            named = None if member.is_dir else split_name(member.name)
            if named is None:
                continue
            key, ext = named
            if current is not None and key != current.key:
                yield current.source(shard, sid, label_field)
                current = None
            current = current or _Sample(key)
            current.add(ext, member.offset, member.size)
    except NotPlainTar as e:
        yield InputSource(name=shard, id=sid, error=(
            f"{shard}: not a readable tar shard ({e}); its samples from there on are not run"))
        return
    finally:
        reader.close()
    if current is not None:
        yield current.source(shard, sid, label_field)


def _text_label(data: bytes, what: str) -> int | str:
    text = data.decode("utf-8", "replace").strip()
    if not text or len(text) > 256:
        raise InputError(f"{what}: its label member must hold a class index or name "
                         "(1 to 256 characters)")
    return int(text) if text.isdecimal() and text.isascii() else text


def decode_sample(part: Part, read: Callable[[Span], bytes], what: str) -> Sample:
    """A tar sample's image, label, box and mask from its members' bytes (`read(span)`); a
    member that says nothing usable fails the sample alone (`InputError`)."""
    from shared.spec.datasets import parse_box, parse_label, resolve  # it imports this module


    members = part.members or {}
    label = box = mask_uri = None
    if JSON in members:
        where = f"{what} json"
        meta = loads(read(members[JSON]), where)
        if not isinstance(meta, dict):
            raise SpecError(where, "must be a JSON object")
        if meta.get(part.label) is not None:
            label = parse_label(meta[part.label], f"{where}.{part.label}")
        if meta.get("box") is not None:
            box = parse_box(meta["box"], f"{where}.box")
        if meta.get("mask") is not None:
            folder = posixpath.dirname(part.object)
            mask_uri = resolve(parse_uri(meta["mask"], f"{where}.mask"), folder, f"{where}.mask")
    if LABEL in members:
        label = _text_label(read(members[LABEL]), what)
    mask = read(members[MASK]) if MASK in members else None
    return Sample(read(members[IMAGE]), label, None, box, mask, mask_uri)
