"""Inputs kept inside larger objects: a sample of a WebDataset tar shard, a row of a Parquet
file or of an Arrow stream file (Hugging Face data sets).

The planner records where each input's bytes are (a `Part`, in the plan file beside the
input); a worker reads the inputs of a run with one range read per object
(`shared.storage.partreader`) and decodes each into a `Sample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TAR, PARQUET, ARROW = "tar", "parquet", "arrow"
FORMATS = (TAR, PARQUET, ARROW)
# The roles of a tar sample's members that are read; no other member is ever decoded.
IMAGE, LABEL, JSON, MASK = "image", "label", "json", "mask"

Span = tuple[int, int]  # bytes start..stop (exclusive) of an object


@dataclass(frozen=True)
class Part:
    """Where one input is inside `object` (a URI), and what of it is read.

    - `tar`: `members` maps each role read (`image`, and `label`, `json`, `mask` when the
      sample has them) to the span of that member's data; `span` covers them all.
      `label` names the label field looked up in the `json` member.
    - `parquet`: `span` is the columns read of row group `unit`, `row` the input's row in
      it, `head` the file's footer.
    - `arrow`: `span` is the record batch message holding the input, `row` its row in the
      batch, `head` the schema message at the start of the stream.
    For both tables `image` and `label` name the columns read (`label` may be None).
    """

    format: str
    object: str
    span: Span
    members: dict[str, Span] | None = None
    head: Span | None = None
    unit: int = 0
    row: int = 0
    image: str | None = None
    label: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "object": self.object,
                               "span": list(self.span)}
        if self.members is not None:
            out["members"] = {k: list(v) for k, v in self.members.items()}
        if self.head is not None:
            out["head"] = list(self.head)
        if self.unit:
            out["unit"] = self.unit
        if self.row:
            out["row"] = self.row
        for name in ("image", "label"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Part:
        members = raw.get("members")
        return cls(
            format=raw["format"], object=raw["object"], span=tuple(raw["span"]),
            members={k: tuple(v) for k, v in members.items()} if members is not None else None,
            head=tuple(raw["head"]) if raw.get("head") else None, unit=raw.get("unit", 0),
            row=raw.get("row", 0), image=raw.get("image"), label=raw.get("label"),
        )


@dataclass(frozen=True)
class Sample:
    """What a part holds: the image's bytes, and what the data set says of it.

    `label` is as the data set gives it: a class index, or a name (a `cls` member's text, a
    JSON field, a Hugging Face `ClassLabel`'s name — whose own index is then `label_index`).
    `mask` is the bytes of a `mask.png` member, `mask_uri` a mask named in the `json` member.
    """

    image: bytes
    label: int | str | None = None
    label_index: int | None = None
    box: tuple[int, int, int, int] | None = None
    mask: bytes | None = None
    mask_uri: str | None = None
