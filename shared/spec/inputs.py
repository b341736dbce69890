"""One way to name an input wherever a spec needs one (an IG baseline, an inversion target).

`{"uri": ...}` names an object under the same rules as a job's `inputs`; `{"upload": name}` a
file part of the same multipart request; `{"item": index}` an input of the same job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.errors import SpecError

MAX_URI_CHARS = 1024
INPUT_REF_KINDS = ("uri", "upload", "item")


@dataclass(frozen=True)
class InputRef:
    """A reference to one input: `kind` is `uri`, `upload` or `item`."""

    kind: str
    value: str | int

    def to_json(self) -> dict[str, Any]:
        return {self.kind: self.value}


def parse_uri(raw: Any, where: str) -> str:
    """A non-empty URI string of at most 1,024 characters (its place is checked elsewhere)."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_URI_CHARS:
        raise SpecError(where, f"must be a non-empty string (<= {MAX_URI_CHARS} chars)")
    if any(ord(c) < 32 or c == "\x7f" for c in raw):
        raise SpecError(where, "must not contain control characters")
    try:
        urlsplit(raw)
    except ValueError as e:  # e.g. an unclosed `[` of an IPv6 host
        raise SpecError(where, f"is not a URI ({e})") from None
    return raw


def parse_input_ref(raw: Any, where: str) -> InputRef:
    """`{"uri": str}`, `{"upload": part name}` or `{"item": index}`."""
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in INPUT_REF_KINDS:
        raise SpecError(where, 'must be one of {"uri": ...}, {"upload": name}, {"item": index}')
    ((kind, value),) = raw.items()
    if kind == "uri":
        return InputRef(kind, parse_uri(value, f"{where}.uri"))
    if kind == "upload":
        if not isinstance(value, str) or not value or len(value) > 255:
            raise SpecError(f"{where}.upload", "must name a file part of the request")
        return InputRef(kind, value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{where}.item", f"must be an item index >= 0, got {value!r}")
    return InputRef(kind, value)


def named_uploads(spec: Any) -> set[str]:
    """The file parts a spec names as inputs (`{"upload": name}`), wherever they are in it."""
    if isinstance(spec, dict):
        if set(spec) == {"upload"} and isinstance(spec["upload"], str):
            return {spec["upload"]}
        return set().union(*(named_uploads(v) for v in spec.values())) if spec else set()
    if isinstance(spec, list):
        return set().union(*(named_uploads(v) for v in spec)) if spec else set()
    return set()
