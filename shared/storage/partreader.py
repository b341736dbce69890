"""Reading inputs kept inside larger objects (`shared.storage.parts`), a run of them at a time.

The parts of one object are read together: their spans, sorted, are merged into ranges
wherever less than `GAP` bytes lie between them, and each range is one range read — a chunk
of samples of one shard, or of rows of one file, is one request. Each row group or record
batch is decoded once for all its rows. A file's head (a Parquet footer, an Arrow schema) is
read once per process and kept (`Heads`, bounded in bytes). Whatever is wrong with a part
fails that part alone, and whatever is wrong with an object or a unit fails its parts with
one message; only a failure of the storage backend propagates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from shared.errors import InputError
from shared.storage import hfdatasets, webdataset
from shared.storage.interface import Storage, StorageError
from shared.storage.parts import TAR, Part, Sample, Span

GAP = 1 << 20  # bytes between two spans worth reading rather than a second request
HEADS_BYTES = 64 << 20  # heads kept per process


class Heads:
    """Decoded heads of files (Parquet metadata, Arrow schemas), least recently used first
    out once their bytes pass the budget."""

    def __init__(self, budget: int = HEADS_BYTES) -> None:
        self.budget, self.used = budget, 0
        self.items: OrderedDict[tuple[str, Span], tuple[Any, int]] = OrderedDict()

    def get(self, key: tuple[str, Span], load: Callable[[], bytes],
            decode: Callable[[bytes], Any]) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key][0]
        data = load()
        value = decode(data)
        self.items[key] = (value, len(data))
        self.used += len(data)
        while self.used > self.budget and len(self.items) > 1:
            _, (_, size) = self.items.popitem(last=False)
            self.used -= size
        return value


def _ranges(spans: list[Span]) -> list[Span]:
    """The spans merged into the ranges to read."""
    merged: list[list[int]] = []
    for start, stop in sorted(set(spans)):
        if merged and start - merged[-1][1] < GAP:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(a, b) for a, b in merged]


class _Fetched:
    """The ranges read of one object; `read(span)` cuts a span out of them."""

    def __init__(self, storage: Storage, key: str, uri: str, spans: list[Span]) -> None:
        self.uri = uri
        self.data = {r: storage.get_range(key, *r) for r in _ranges(spans)}

    def read(self, span: Span) -> bytes:
        for (start, stop), data in self.data.items():
            if start <= span[0] and span[1] <= stop:
                out = data[span[0] - start:span[1] - start]
                if len(out) == span[1] - span[0]:
                    return out
        raise InputError(f"{self.uri}: is shorter than when the job was planned (bytes "
                         f"{span[0]}..{span[1]} are missing); it changed since")


def _units(fetched: _Fetched, parts: Sequence[Part], storage: Storage, key: str,
           heads: Heads) -> dict[Span, Any]:
    """Each distinct row group or record batch of the parts, decoded (or why it is not):
    (unit, class names) or an error message."""
    out: dict[Span, Any] = {}
    for part in parts:
        if part.span in out:
            continue
        try:
            head = heads.get((part.object, part.head), lambda p=part: storage.get_range(
                key, *p.head), lambda data, p=part: hfdatasets.read_head(p, data))
            schema = head if part.format != hfdatasets.PARQUET else (
                head.schema.to_arrow_schema())
            names = hfdatasets.class_names(schema, part.label) if part.label else None
            out[part.span] = (hfdatasets.read_unit(part, head, fetched.read(part.span)), names)
        except InputError as e:
            out[part.span] = e.message
        except (FileNotFoundError, StorageError):
            raise
        except (ValueError, OSError, KeyError) as e:  # pyarrow's ArrowInvalid, ArrowIOError
            out[part.span] = (f"{part.object}: bytes {part.span[0]}..{part.span[1]} cannot "
                              f"be read as planned ({e})")
    return out


def read_parts(storage: Storage, key: str, parts: Sequence[Part], whats: Sequence[str],
               heads: Heads) -> list[Sample | str]:
    """The samples of `parts`, all inside the object at `key` (each named by its `whats`
    entry in messages), or for each the reason it cannot be had."""
    uri = parts[0].object
    try:
        fetched = _Fetched(storage, key, uri, [p.span for p in parts])
        units = {} if parts[0].format == TAR else _units(fetched, parts, storage, key, heads)
    except FileNotFoundError as e:
        return [f"{uri}: {e}"] * len(parts)
    except InputError as e:
        return [e.message] * len(parts)
    out: list[Sample | str] = []
    for part, what in zip(parts, whats, strict=True):
        try:
            if part.format == TAR:
                out.append(webdataset.decode_sample(part, fetched.read, what))
                continue
            unit = units[part.span]
            out.append(unit if isinstance(unit, str) else hfdatasets.row_sample(
                part, unit[0], unit[1], what))
        except InputError as e:
            out.append(e.message)
    return out
