"""Hugging Face data sets as a data set, read with pyarrow (never with `datasets`): the Parquet
files of a split, named as the Hub names them, or a `save_to_disk` folder of Arrow stream
files.

Parquet: the files of split `s` are `[data/]s-NNNNN-of-NNNNN[-hash].parquet`, `[data/]s.parquet`
or `[config/]s/*.parquet` under the prefix (or the prefix is one `.parquet` file); planning
reads each file's footer once, and a row group is read (its image and label columns) when its
rows run. Arrow: a `save_to_disk` folder (`state.json` naming `data-NNNNN-of-NNNNN.arrow`), or
a `DatasetDict`'s (`dataset_dict.json`, one such folder per split). A stream file has no footer
to seek by, so planning reads each once from start to end, keeping only where each record
batch is; a run reads its batches with one range read. Images are the `bytes` of the image
column's `{bytes, path}` struct (or a binary column); labels the label column's integers, a
`ClassLabel`'s names given by the `huggingface` schema metadata that `datasets` writes.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from shared.errors import InputError
from shared.results.records import InputSource
from shared.storage.interface import Reader, Storage
from shared.storage.parts import ARROW, PARQUET, Part, Sample, Span

DEFAULT_SPLIT, DEFAULT_IMAGE, DEFAULT_LABEL = "train", "image", "label"
FOOTER_PROBE = 64 << 10  # the tail read first: most footers are within it
MAX_HEAD = 16 << 20  # a footer or a schema message larger than this fails its file
MAX_UNIT = 256 << 20  # a row group's read columns or a record batch larger than this
_BLOCK = 1 << 20


def _split_file(split: str) -> re.Pattern[str]:
    s = re.escape(split)
    return re.compile(rf"^(?:data/)?{s}(?:-[0-9]{{5}}-of-[0-9]{{5}}(?:-[0-9a-f]+)?)?\.parquet$"
                      rf"|^(?:[^/]+/)?{s}/[^/]+\.parquet$")


def _small_json(storage: Storage, key: str) -> Any:
    """A `state.json`-like file (at most a megabyte); `FileNotFoundError` if there is none."""
    data = storage.get_range(key, 0, 1 << 20)
    try:
        return json.loads(data)
    except ValueError:
        raise InputError(f"{key}: is not JSON") from None


def data_files(storage: Storage, key: str, split: str | None,
               where: str) -> tuple[str, Iterator[str]]:
    """The format (`parquet` or `arrow`) and the keys of the split's files, in order, under
    the prefix `key` (ending with `/`) or the one `.parquet` file `key` names."""
    if key.endswith(".parquet"):
        return PARQUET, iter([key])
    folder = key
    try:
        splits = _small_json(storage, folder + "dataset_dict.json").get("splits", [])
        wanted = split or DEFAULT_SPLIT
        if wanted not in splits:
            raise InputError(f"dataset.split: the data set has splits {splits}, not "
                             f"{wanted!r}")
        folder = f"{folder}{wanted}/"
    except FileNotFoundError:
        pass
    try:
        state = _small_json(storage, folder + "state.json")
    except FileNotFoundError:
        pattern = _split_file(split or DEFAULT_SPLIT)
        return PARQUET, (k for k in storage.list(key) if pattern.match(k[len(key):]))
    names = [f.get("filename") for f in state.get("_data_files", []) if isinstance(f, dict)]
    if not names or any(not isinstance(n, str) or "/" in n or n in ("", ".", "..")
                        for n in names):
        raise InputError(f"{where}: {folder}state.json names no data files")
    return ARROW, iter(folder + n for n in names)


def _columns(schema, image: str, label: str | None, label_given: bool, what: str,
             ) -> tuple[str | None, list[str] | None]:
    """The label column to read (None: there is none), and its `ClassLabel` names; a
    missing image column (or a label column asked for by name) is the job's error."""
    import pyarrow as pa

    names = schema.names
    if image not in names:
        raise InputError(f"dataset.image_column: {what} has no column {image!r} (its "
                         f"columns: {', '.join(names)[:300]})")
    kind = schema.field(image).type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or (
            pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0)):
        raise InputError(f"dataset.image_column: column {image!r} of {what} is {kind}, not "
                         "an image ({bytes, path}) or binary column")
    if label is None or label not in names:
        if label_given:
            raise InputError(f"dataset.label_column: {what} has no column {label!r} (its "
                             f"columns: {', '.join(names)[:300]})")
        return None, None
    return label, class_names(schema, label)


def class_names(schema, label: str) -> list[str] | None:
    """The names of a `ClassLabel` column, from the schema's `huggingface` metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        feature = json.loads(raw)["info"]["features"][label] if raw else None
    except (ValueError, KeyError, TypeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


class _Sparse(io.RawIOBase):
    """A file of `size` bytes of which only some ranges are here (a footer, a row group's
    columns): what pyarrow reads a Parquet file through; a read elsewhere is an error."""

    def __init__(self, size: int, ranges: list[tuple[int, bytes]]) -> None:
        self.size, self.ranges, self.pos = size, ranges, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        for start, data in self.ranges:
            if start <= self.pos and self.pos + want <= start + len(data):
                buffer[:want] = data[self.pos - start:self.pos - start + want]
                self.pos += want
                return want
        raise OSError(f"bytes {self.pos}..{self.pos + want} were not read")


def parquet_metadata(footer: bytes):
    """A Parquet file's metadata from its footer (the bytes after the last data page)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_metadata(pa.BufferReader(b"PAR1" + footer))


def index_parquet(storage: Storage, key: str, uri: str, fid: str, image: str,
                  label: str | None, label_given: bool) -> Iterator[InputSource]:
    """The rows of one Parquet file, from its footer (one or two reads); a file whose
    footer cannot be read is one failed item named by the file."""
    tail, size = storage.get_tail(key, FOOTER_PROBE)
    length = int.from_bytes(tail[-8:-4], "little") if len(tail) >= 12 else -1
    if tail[-4:] != b"PAR1" or not 0 < length <= min(MAX_HEAD, size - 12):
        yield InputSource(name=uri, id=fid, error=f"{uri}: not a Parquet file (no footer), "
                                                  f"or a footer over {MAX_HEAD:,} bytes")
        return
    head = (size - 8 - length, size)
    footer = tail[-8 - length:] if length + 8 <= len(tail) else storage.get_range(key, *head)
    try:
        meta = parquet_metadata(footer)
        schema = meta.schema.to_arrow_schema()
    except (OSError, ValueError) as e:
        yield InputSource(name=uri, id=fid, error=f"{uri}: its Parquet footer cannot be read "
                                                  f"({e})")
        return
    label, _ = _columns(schema, image, label, label_given, uri)
    wanted = {image, *([label] if label else [])}
    row = 0
    for group in range(meta.num_row_groups):
        rg = meta.row_group(group)
        chunks = [rg.column(c) for c in range(rg.num_columns)
                  if rg.column(c).path_in_schema.split(".", 1)[0] in wanted]
        starts = [min(c.data_page_offset, c.dictionary_page_offset or c.data_page_offset)
                  for c in chunks]
        span = (min(starts), max(s + c.total_compressed_size for s, c in zip(starts, chunks,
                                                                            strict=True)))
        too_big = span[1] - span[0] > MAX_UNIT
        for r in range(rg.num_rows):
            name, item_id = f"{uri}#{row}", f"{fid}/{row}"
            row += 1
            if too_big:
                yield InputSource(name=name, id=item_id, error=(
                    f"{name}: row group {group} is {span[1] - span[0]:,} bytes, more than "
                    f"the {MAX_UNIT:,} read at once; write the data set with smaller row groups"))
                continue
            yield InputSource(name=name, id=item_id, part=Part(
                PARQUET, uri, span, head=head, unit=group, row=r, image=image, label=label))


def _int(buf: bytes, at: int, size: int, signed: bool = False) -> int:
    if at < 0 or at + size > len(buf):
        raise ValueError("a message header points outside itself")
    return int.from_bytes(buf[at:at + size], "little", signed=signed)


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Where field `index` of the flatbuffer table at `table` is (None: absent)."""
    vtable = table - _int(buf, table, 4, signed=True)
    entry = 4 + 2 * index
    if entry + 2 > _int(buf, vtable, 2):
        return None
    offset = _int(buf, vtable + entry, 2)
    return table + offset if offset else None


def _message(meta: bytes) -> tuple[int, int, int]:
    """(header type, body length, rows) of an Arrow IPC message's flatbuffer `Message`:
    header type 1 is a schema, 2 a dictionary batch, 3 a record batch (whose `length` is
    its rows)."""
    root = _int(meta, 0, 4)
    at = _field(meta, root, 1)
    kind = _int(meta, at, 1) if at is not None else 0
    at = _field(meta, root, 3)
    body = _int(meta, at, 8, signed=True) if at is not None else 0
    rows = 0
    at = _field(meta, root, 2)
    if kind == 3 and at is not None:
        header = at + _int(meta, at, 4)
        at = _field(meta, header, 0)
        rows = _int(meta, at, 8, signed=True) if at is not None else 0
    if body < 0 or rows < 0:
        raise ValueError("a message with a negative length")
    return kind, body, rows


class _Counted:
    """A stream read exactly, counting where it is; bytes read ahead can be put back."""

    def __init__(self, reader: Reader) -> None:
        self.reader, self.offset, self.back = reader, 0, b""

    def read(self, n: int) -> bytes:
        data, self.back = self.back[:n], self.back[n:]
        while len(data) < n:
            more = self.reader.read(n - len(data))
            if not more:
                break
            data += more
        self.offset += len(data)
        return data

    def put_back(self, data: bytes) -> None:
        self.back, self.offset = data + self.back, self.offset - len(data)

    def skip(self, n: int) -> bool:
        while n > 0:
            got = len(self.read(min(n, _BLOCK)))
            if not got:
                return False
            n -= got
        return True


def _messages(stream: _Counted) -> Iterator[tuple[Span, int, int, bytes]]:
    """(span, kind, rows, metadata) of each whole message of an Arrow IPC stream; the bodies
    are skipped, never held. An IPC file (magic `ARROW1`) is read as the stream it holds."""
    magic = stream.read(8)
    if magic != b"ARROW1\0\0":
        stream.put_back(magic)
    while True:
        start = stream.offset
        prefix = stream.read(4)
        if len(prefix) < 4:
            return
        if prefix == b"\xff\xff\xff\xff":
            prefix = stream.read(4)
        length = int.from_bytes(prefix, "little", signed=True)
        if length == 0:
            return
        if not 0 < length <= MAX_HEAD:
            raise ValueError(f"a message header of {length} bytes at byte {start}")
        meta = stream.read(length)
        if len(meta) != length:
            raise ValueError(f"truncated at byte {stream.offset}")
        kind, body, rows = _message(meta)
        if not stream.skip(body):
            raise ValueError(f"truncated at byte {stream.offset}")
        yield (start, stream.offset), kind, rows, meta


def _schema(meta: bytes):
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(b"\xff\xff\xff\xff" + len(meta).to_bytes(4, "little")
                                           + meta))


def index_arrow(open_file: Callable[[], Reader], uri: str, fid: str, image: str,
                label: str | None, label_given: bool) -> Iterator[InputSource]:
    """The rows of one Arrow stream file, from one read of it start to end (each batch's
    body skipped); a file that cannot be read ends with one failed item named by the file,
    its rows from there on not run."""
    reader = open_file()
    stream = _Counted(reader)
    head: Span | None = None
    row = 0
    try:
        for span, kind, rows, meta in _messages(stream):
            if head is None:
                if kind != 1:
                    raise ValueError("the stream does not start with its schema")
                head = span
                label, _ = _columns(_schema(meta), image, label, label_given, uri)
                continue
            if kind != 3:
                raise ValueError("dictionary-encoded columns are not read" if kind == 2 else
                                 f"a message of type {kind} among the record batches")
            size = span[1] - span[0]
            for r in range(rows):
                name, item_id = f"{uri}#{row}", f"{fid}/{row}"
                row += 1
                if size > MAX_UNIT:
                    yield InputSource(name=name, id=item_id, error=(
                        f"{name}: its record batch is {size:,} bytes, more than the "
                        f"{MAX_UNIT:,} read at once"))
                    continue
                yield InputSource(name=name, id=item_id, part=Part(
                    ARROW, uri, span, head=head, row=r, image=image, label=label))
    except ValueError as e:  # pyarrow's ArrowInvalid too; a storage failure propagates
        yield InputSource(name=uri, id=fid, error=(
            f"{uri}: not a readable Arrow stream file ({e}); its rows from there on are "
            "not run"))
    finally:
        reader.close()


# --- reading rows back ---------------------------------------------------------------------

def read_head(part: Part, data: bytes):
    """What decoding a part's unit needs, from its head's bytes: a Parquet file's metadata
    or an Arrow stream's schema."""
    import pyarrow as pa

    if part.format == PARQUET:
        return parquet_metadata(data)
    return pa.ipc.read_schema(pa.py_buffer(data))


def read_unit(part: Part, head, data: bytes):
    """The columns read of the unit (row group, record batch) holding `part`, from the
    bytes of its span, as a pyarrow table or record batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [part.image, *([part.label] if part.label else [])]
    if part.format == ARROW:
        batch = pa.ipc.read_record_batch(pa.ipc.read_message(pa.py_buffer(data)), head)
        return batch.select(columns)
    file = _Sparse(part.head[1], [(part.span[0], data)])
    return pq.ParquetFile(file, metadata=head, pre_buffer=False).read_row_group(
        part.unit, columns=columns)


def row_sample(part: Part, unit, names: list[str] | None, what: str) -> Sample:
    """One row of a unit as a `Sample`; a row without image bytes fails alone."""
    value = unit.column(part.image)[part.row].as_py()
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (
        value, None)
    if not data:
        raise InputError(f"{what}: its image has no bytes" + (
            f", only a path ({str(path)[:200]}): save the data set with its images "
            "embedded" if path else ""))
    label: int | str | None = None
    index = None
    if part.label is not None:
        raw = unit.column(part.label)[part.row].as_py()
        if isinstance(raw, bool) or not isinstance(raw, (int, str)) or raw == -1:
            raw = None  # `datasets` labels a row without a label -1
        if isinstance(raw, int) and raw < 0:
            raise InputError(f"{what}: label {raw} is not a class index")
        if isinstance(raw, int) and names is not None:
            if raw >= len(names):
                raise InputError(f"{what}: label {raw} is beyond the data set's "
                                 f"{len(names)} class names")
            label, index = names[raw], raw
        else:
            label = raw
    return Sample(bytes(data), label, index)
