"""Turn SDK arguments into the v1 request: the job spec, and the inputs as files or URIs.

Pure functions shared by the sync and async clients.
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

URI_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
TARGET_HELP = "predicted | class:K | topk:K | layer:NAME:CHANNEL"
_MAGIC = {
    b"\x89PNG": ("png", "image/png"),
    b"\xff\xd8\xff": ("jpg", "image/jpeg"),
    b"\x93NUMPY": ("npy", "application/octet-stream"),
}

# One multipart file part: (field name, (filename, bytes, content type)).
FilePart = tuple[str, tuple[str, bytes, str]]


def parse_target(target: Any) -> Any:
    """The spec's `target` from `"predicted"`, `"class:K"`, `"topk:K"`, `"layer:NAME:C"`,
    an int (a class index) or a dict passed through as is."""
    if target is None or isinstance(target, dict):
        return target
    if isinstance(target, bool):
        raise ValueError(f"target must be {TARGET_HELP}, got {target!r}")
    if isinstance(target, int):
        return {"class": target}
    text = str(target).strip()
    if text == "predicted":
        return "predicted"
    kind, _, rest = text.partition(":")
    try:
        if kind == "class":
            return {"class": int(rest)}
        if kind == "topk":
            return {"topk": int(rest)}
        if kind == "layer":
            name, _, channel = rest.rpartition(":")
            if name:
                return {"layer": name, "channel": int(channel)}
    except ValueError:
        pass
    raise ValueError(f"target must be {TARGET_HELP}, got {target!r}")


def job_spec(
    model: str,
    methods: Iterable[str] | str | None = None,
    target: Any = None,
    reduce: str | None = None,
    outputs: Iterable[str] | str | None = None,
) -> dict[str, Any]:
    """The JSON spec of `POST /v1/jobs`; fields left as None take the service's defaults."""
    spec: dict[str, Any] = {"model": model}
    if methods is not None:
        spec["methods"] = [methods] if isinstance(methods, str) else list(methods)
    if target is not None:
        spec["target"] = parse_target(target)
    if reduce is not None:
        spec["reduce"] = reduce
    if outputs is not None:
        spec["outputs"] = [outputs] if isinstance(outputs, str) else list(outputs)
    return spec


def _sniff(data: bytes) -> tuple[str, str]:
    for magic, kind in _MAGIC.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp", "image/webp")
    return ("bin", "application/octet-stream")


def _array_npy(array: Any) -> bytes:
    import numpy as np  # only reached when the caller passed an array, so numpy is installed

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(np.asarray(array, dtype=np.float32)), allow_pickle=False)
    return buf.getvalue()


def _file_part(index: int, value: Any) -> tuple[str, bytes, str]:
    if isinstance(value, (str, Path)):
        path = Path(value)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return (path.name, path.read_bytes(), kind)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        ext, kind = _sniff(data)
        return (f"input-{index:05d}.{ext}", data, kind)
    if hasattr(value, "save") and hasattr(value, "mode"):  # a PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return (f"input-{index:05d}.png", buf.getvalue(), "image/png")
    if hasattr(value, "__array__") or hasattr(value, "__array_interface__"):
        return (f"input-{index:05d}.npy", _array_npy(value), "application/octet-stream")
    raise TypeError(
        f"input {index}: expected a path, a storage URI, image bytes, a PIL image or a "
        f"C×H×W float array, got {type(value).__name__}"
    )


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(URI_RE.match(value))


def build_submit(
    inputs: Any, spec: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str] | None, list[FilePart] | None]:
    """`(json, data, files)` for httpx: a JSON body for storage URIs, else multipart."""
    if isinstance(inputs, (str, Path, bytes, bytearray)) or not isinstance(inputs, Iterable) or (
        hasattr(inputs, "__array__") and getattr(inputs, "ndim", 0) == 3
    ):
        inputs = [inputs]  # one input given on its own
    inputs = list(inputs)
    if not inputs:
        raise ValueError("submit needs at least one input")
    uris = [is_uri(v) for v in inputs]
    if all(uris):
        return ({**spec, "inputs": [{"uri": v} for v in inputs]}, None, None)
    if any(uris):
        raise ValueError("submit takes either storage URIs or files/arrays, not both in one job")
    files = [("images", _file_part(i, v)) for i, v in enumerate(inputs)]
    return (None, {"spec": json.dumps(spec)}, files)
