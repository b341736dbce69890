"""Shards: the raw maps of a data-set job's segment in one safetensors file, written by the
worker and cut by the API (numpy only; the format is defined here, once).

For each method position `p` a shard holds `maps.p` (K×C×H×W, float16 by default), `scale.p`
(K, float32), `index.p` (K, int64: the item of each map) and, for a top-k target, `rank.p`
(K, int64: each map's target rank). A map is `maps.p[k] * scale.p[k]`: float16 maps are
stored divided by their largest absolute value, so small gradients keep their precision
(max-abs error ≤ 2⁻¹¹ of the map's maximum). Any safetensors reader opens a shard
(`safetensors.numpy.load_file`); the API reads one map with two ranged reads (the header, then
the map's bytes).
"""

from __future__ import annotations

import json
import struct
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from shared.models.artifacts import header_length, safetensors_header
from shared.storage.interface import Storage

DTYPES = {"float16": ("F16", np.float16), "float32": ("F32", np.float32)}
HEADER_PROBE = 64 * 1024


def maps_tensor(position: int) -> str:
    return f"maps.{position}"


@dataclass
class _Stream:
    """One method position's maps, spooled to a temporary file as they arrive."""

    file: IO[bytes]
    shape: tuple[int, ...] | None = None
    scales: list[float] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)  # top-k targets only


class ShardWriter:
    """Collects maps, in memory-flat fashion, and writes them as one safetensors file."""

    def __init__(self, dtype: str = "float16") -> None:
        self.tag, self.dtype = DTYPES[dtype]
        self.quantize = dtype != "float32"
        self._streams: dict[int, _Stream] = {}

    def add(self, position: int, index: int, values: np.ndarray, rank: int | None = None) -> int:
        """Append one map (`rank`: its target rank, for a top-k target); returns its row in
        `maps.<position>`."""
        values = np.asarray(values, dtype=np.float32)
        stream = self._streams.get(position)
        if stream is None:
            stream = self._streams[position] = _Stream(tempfile.TemporaryFile())
        if stream.shape is None:
            stream.shape = values.shape
        elif values.shape != stream.shape:
            raise ValueError(f"map of shape {values.shape} in a shard of {stream.shape}")
        if stream.indices and (rank is not None) != bool(stream.ranks):
            raise ValueError(f"maps with and without a target rank in {maps_tensor(position)}")
        if rank is not None:
            stream.ranks.append(rank)
        top = float(np.abs(values).max()) if values.size else 0.0
        scale = top if self.quantize and top > 0 and np.isfinite(top) else 1.0
        stream.file.write(np.ascontiguousarray(values / scale, dtype=self.dtype).tobytes())
        stream.scales.append(scale)
        stream.indices.append(index)
        return len(stream.indices) - 1

    def __len__(self) -> int:
        return sum(len(s.indices) for s in self._streams.values())

    def write(self, out: IO[bytes]) -> None:
        """The safetensors file: header, then every tensor's bytes."""
        header: dict[str, Any] = {}
        pieces: list[tuple[str, Any]] = []
        offset = 0

        def entry(name: str, tag: str, shape: list[int], nbytes: int) -> None:
            nonlocal offset
            header[name] = {"dtype": tag, "shape": shape, "data_offsets": [offset,
                                                                           offset + nbytes]}
            offset += nbytes

        for position in sorted(self._streams):
            s = self._streams[position]
            k = len(s.indices)
            size = int(np.prod(s.shape)) * np.dtype(self.dtype).itemsize
            entry(maps_tensor(position), self.tag, [k, *s.shape], k * size)
            pieces.append(("file", s.file))
            scales = np.asarray(s.scales, dtype=np.float32).tobytes()
            entry(f"scale.{position}", "F32", [k], len(scales))
            pieces.append(("bytes", scales))
            indices = np.asarray(s.indices, dtype=np.int64).tobytes()
            entry(f"index.{position}", "I64", [k], len(indices))
            pieces.append(("bytes", indices))
            if s.ranks:
                ranks = np.asarray(s.ranks, dtype=np.int64).tobytes()
                entry(f"rank.{position}", "I64", [k], len(ranks))
                pieces.append(("bytes", ranks))
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
        out.write(struct.pack("<Q", len(text)) + text)
        for kind, piece in pieces:
            if kind == "bytes":
                out.write(piece)
            else:
                piece.seek(0)
                while chunk := piece.read(1 << 20):
                    out.write(chunk)

    def close(self) -> None:
        for s in self._streams.values():
            s.file.close()


@dataclass(frozen=True)
class ShardHeader:
    """Where each tensor of a shard lies (absolute byte offsets)."""

    tensors: dict[str, dict[str, Any]]
    data_start: int

    def locate(self, name: str, row: int) -> tuple[int, int, tuple[int, ...], np.dtype]:
        """Byte range, shape and dtype of row `row` of tensor `name`."""
        meta = self.tensors.get(name)
        if meta is None:
            raise KeyError(f"no tensor {name!r} in the shard")
        shape = tuple(meta["shape"])
        if not 0 <= row < shape[0]:
            raise KeyError(f"no row {row} in tensor {name!r}")
        dtype = np.dtype({"F16": np.float16, "F32": np.float32, "I64": np.int64}[meta["dtype"]])
        size = int(np.prod(shape[1:])) * dtype.itemsize
        start = self.data_start + meta["data_offsets"][0] + row * size
        return start, start + size, shape[1:], dtype


def read_header(storage: Storage, key: str) -> ShardHeader:
    """A shard's header, in one or two ranged reads."""
    head = storage.get_range(key, 0, HEADER_PROBE)
    length = header_length(head)
    if length > len(head):
        head = storage.get_range(key, 0, length)
    header = safetensors_header(head[:length], length)
    header.pop("__metadata__", None)
    return ShardHeader(header, length)


def read_map(storage: Storage, key: str, position: int, row: int,
             header: ShardHeader | None = None) -> np.ndarray:
    """One map of a shard as float32, scale applied."""
    header = header or read_header(storage, key)
    start, stop, shape, dtype = header.locate(maps_tensor(position), row)
    values = np.frombuffer(storage.get_range(key, start, stop), dtype=dtype).reshape(shape)
    s_start, s_stop, _, _ = header.locate(f"scale.{position}", row)
    scale = float(np.frombuffer(storage.get_range(key, s_start, s_stop), dtype=np.float32)[0])
    return values.astype(np.float32) * scale

