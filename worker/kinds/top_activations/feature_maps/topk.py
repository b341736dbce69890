"""The running top-k of a layer's channels: small, serializable, merged in any order.

For each channel the k items with the highest activation (an item's maximum over the
layer's positions), at most one entry per item. The order is total, so that any way of
splitting a data set into chunks and merging their partial results gives the same answer:
higher activation first, then lower item index, then (for one item offered twice) the
earlier position in row-major order. NaN activations are never ranked.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EMPTY = -1  # the item index of an unfilled slot


@dataclass(frozen=True)
class TopActivation:
    """One of a channel's top items: its index, activation, and `(y, x)` on the layer's grid."""

    index: int
    activation: float
    position: tuple[int, int]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "activation": self.activation,
                "position": list(self.position)}


def _select(values: np.ndarray, items: np.ndarray, positions: np.ndarray, k: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row (channel), the best k candidates, one per item, in the module's total order.

    `values` and `items` are C×M, `positions` C×M×2; the result is C×k with empty slots
    (item -1, value -inf, position 0) at the end of a row that has fewer than k items.
    """
    valid = (items != EMPTY) & ~np.isnan(values)
    neg = np.where(valid, -values.astype(np.float64), 0.0)
    y, x = positions[..., 0], positions[..., 1]
    order = np.lexsort((x, y, items, neg, ~valid), axis=-1)
    values, items, y, x, valid = (np.take_along_axis(a, order, axis=-1)
                                  for a in (values, items, y, x, valid))
    # One entry per item: sorted by (item, rank), every entry after the first of its item
    # is a duplicate; the first is the item's best entry.
    rank = np.broadcast_to(np.arange(items.shape[-1]), items.shape)
    by_item = np.lexsort((rank, items), axis=-1)
    grouped = np.take_along_axis(items, by_item, axis=-1)
    repeat = np.zeros_like(valid)
    repeat[:, 1:] = grouped[:, 1:] == grouped[:, :-1]
    duplicate = np.zeros_like(valid)
    np.put_along_axis(duplicate, by_item, repeat, axis=-1)
    keep = valid & ~duplicate
    kept = np.lexsort((rank, ~keep), axis=-1)[:, :k]
    keep = np.take_along_axis(keep, kept, axis=-1)
    values, items, y, x = (np.take_along_axis(a, kept, axis=-1) for a in (values, items, y, x))
    if kept.shape[-1] < k:  # fewer candidates than slots: pad with empty slots
        pad = k - kept.shape[-1]
        keep, values, items, y, x = (np.pad(a, ((0, 0), (0, pad))) for a in
                                     (keep, values, items, y, x))
    return (
        np.where(keep, values, -np.inf).astype(np.float32),
        np.where(keep, items, EMPTY).astype(np.int64),
        np.stack([np.where(keep, y, 0), np.where(keep, x, 0)], axis=-1).astype(np.int64),
    )


class TopK:
    """The top-k items of each of a layer's channels (C×k arrays, channels in given order).

    Immutable: `update` and `merge` return new objects. Its size is O(channels × k),
    whatever the number of items seen.
    """

    def __init__(self, layer: str, k: int, channels: Sequence[int], values: np.ndarray,
                 items: np.ndarray, positions: np.ndarray) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        channels = tuple(int(c) for c in channels)
        if len(set(channels)) != len(channels):
            raise ValueError(f"channels must be distinct, got {list(channels)}")
        shape = (len(channels), k)
        if values.shape != shape or items.shape != shape or positions.shape != (*shape, 2):
            raise ValueError(
                f"arrays of shapes {values.shape}, {items.shape}, {positions.shape} do not "
                f"fit {len(channels)} channels × k {k}"
            )
        self.layer = layer
        self.k = k
        self.channels = channels
        self.values = values.astype(np.float32)
        self.items = items.astype(np.int64)
        self.positions = positions.astype(np.int64)
        for array in (self.values, self.items, self.positions):
            array.flags.writeable = False

    @classmethod
    def empty(cls, layer: str, k: int, channels: Sequence[int]) -> TopK:
        """No item seen yet."""
        c = len(channels)
        return cls(layer, k, channels, np.full((c, k), -np.inf, np.float32),
                   np.full((c, k), EMPTY, np.int64), np.zeros((c, k, 2), np.int64))

    def top(self, channel: int) -> list[TopActivation]:
        """The channel's top items, best first (fewer than k if fewer items were seen)."""
        row = self.channels.index(channel)
        return [
            TopActivation(int(item), float(value), (int(pos[0]), int(pos[1])))
            for value, item, pos in zip(self.values[row], self.items[row], self.positions[row],
                                        strict=True)
            if item != EMPTY
        ]

    def entries(self, channels: Sequence[int] | None = None) -> list[tuple[int, TopActivation]]:
        """`(channel, top activation)` pairs of the given channels (default all), best first
        within each channel: the units phase 2 projects."""
        chosen = self.channels if channels is None else channels
        return [(channel, top) for channel in chosen for top in self.top(channel)]

    def update(self, values: np.ndarray, positions: np.ndarray, indices: Sequence[int]
               ) -> TopK:
        """With a batch seen: `values` N×C (one column per channel, in order), `positions`
        N×C×2 (y, x), `indices` the N items' indices."""
        indices = np.asarray(indices, dtype=np.int64)
        n, c = len(indices), len(self.channels)
        if values.shape != (n, c) or positions.shape != (n, c, 2):
            raise ValueError(f"expected values {n}×{c} and positions {n}×{c}×2, got "
                             f"{values.shape} and {positions.shape}")
        if n and indices.min() < 0:
            raise ValueError("item indices must be >= 0")
        candidates = (
            np.concatenate([self.values, values.T.astype(np.float32)], axis=1),
            np.concatenate([self.items, np.broadcast_to(indices, (c, n))], axis=1),
            np.concatenate([self.positions, positions.transpose(1, 0, 2)], axis=1),
        )
        return TopK(self.layer, self.k, self.channels, *_select(*candidates, self.k))

    @staticmethod
    def merge(parts: Iterable[TopK]) -> TopK:
        """The top-k of the union of the parts' items; the same whatever their order."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge: give at least one TopK")
        first = parts[0]
        for part in parts[1:]:
            if (part.layer, part.k, part.channels) != (first.layer, first.k, first.channels):
                raise ValueError(
                    f"cannot merge the top-{part.k} of {part.layer!r} (channels "
                    f"{list(part.channels)}) into the top-{first.k} of {first.layer!r} "
                    f"(channels {list(first.channels)})"
                )
        candidates = (np.concatenate([getattr(p, name) for p in parts], axis=1)
                      for name in ("values", "items", "positions"))
        return TopK(first.layer, first.k, first.channels, *_select(*candidates, first.k))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopK):
            return NotImplemented
        return (
            (self.layer, self.k, self.channels) == (other.layer, other.k, other.channels)
            and np.array_equal(self.values, other.values)
            and np.array_equal(self.items, other.items)
            and np.array_equal(self.positions, other.positions)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        seen = int((self.items != EMPTY).sum())
        return (f"TopK(layer={self.layer!r}, k={self.k}, channels={len(self.channels)}, "
                f"entries={seen})")

    def to_json(self) -> dict[str, Any]:
        """`{"layer", "k", "channels": [{"channel", "top": [{"index", "activation",
        "position": [y, x]}]}]}`: the report's skeleton."""
        return {
            "layer": self.layer,
            "k": self.k,
            "channels": [{"channel": c, "top": [t.to_json() for t in self.top(c)]}
                         for c in self.channels],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TopK:
        """Read back what `to_json` wrote (re-ranked, so the order holds whatever the input)."""
        layer, k = raw["layer"], int(raw["k"])
        rows = raw["channels"]
        out = cls.empty(layer, k, [int(row["channel"]) for row in rows])
        values, items, positions = (a.copy() for a in (out.values, out.items, out.positions))
        for r, row in enumerate(rows):
            if len(row["top"]) > k:
                raise ValueError(f"channel {row['channel']} lists more than k={k} items")
            for s, entry in enumerate(row["top"]):
                values[r, s] = entry["activation"]
                items[r, s] = entry["index"]
                positions[r, s] = entry["position"]
        return cls(layer, k, out.channels, *_select(values, items, positions, k))

    def to_bytes(self) -> bytes:
        """A compact binary form (an `.npz` archive of plain arrays; no pickle)."""
        buffer = io.BytesIO()
        np.savez(buffer, layer=np.array(self.layer), k=np.array(self.k),
                 channels=np.array(self.channels, dtype=np.int64), values=self.values,
                 items=self.items, positions=self.positions)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TopK:
        """Read back what `to_bytes` wrote; refuses anything else with a ValueError."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a TopK archive ({exc})") from None
        missing = {"layer", "k", "channels", "values", "items", "positions"} - set(arrays)
        if missing:
            raise ValueError(f"not a TopK archive: no {sorted(missing)}")
        k = int(arrays["k"])
        candidates = (arrays["values"], arrays["items"], arrays["positions"])
        shape = candidates[0].shape
        if (len(shape) != 2 or candidates[1].shape != shape
                or candidates[2].shape != (*shape, 2)):
            raise ValueError("not a TopK archive: the arrays are not C×k (and C×k×2)")
        return cls(str(arrays["layer"]), k, arrays["channels"].tolist(), *_select(*candidates, k))
