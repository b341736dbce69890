"""Strict JSON in: no NaN or infinities, bounded nesting, only real characters in strings,
errors that name the field.

Python's `json` accepts `NaN` and `Infinity` and raises `RecursionError` on deep nesting;
here both are a `SpecError`, and nothing non-finite ever reaches a spec or a record.
"""

from __future__ import annotations

import json
import math
from typing import Any

from shared.errors import SpecError

MAX_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _depth(text: str | bytes) -> int:
    """The deepest nesting of `[`/`{` outside strings, found in one pass without recursion."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(text: str | bytes, field: str) -> Any:
    """Parse JSON strictly; a `SpecError` naming `field` if it is not acceptable."""
    if _depth(text) > MAX_DEPTH:
        raise SpecError(field, f"is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise SpecError(field, f"is not valid JSON ({e})") from None
    try:
        # A `\ud800` escape with no partner parses to a lone surrogate: not Unicode, and it
        # would fail later, wherever the string is encoded (a file name, a results file).
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(field, "holds a \\u escape that is not a character (a lone "
                               "surrogate)") from None
    return value


def finite(value: Any, field: str) -> float:
    """A finite number (ints and floats, not booleans), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(field, f"must be a finite number, got {value!r}")
    return float(value)


def integer(value: Any, field: str, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer (not a boolean) within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SpecError(field, f"must be {bound}, got {value}")
    return value
