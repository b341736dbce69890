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

from saliency_client.kinds import (
    KINDS_WITHOUT_INPUTS,
    TOP_ACTIVATIONS,
    parse_channels,
    whole_number,
)

URI_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
TARGET_HELP = "predicted | label | class:K | topk:K | layer:NAME:CHANNEL"
_MAGIC = {
    b"\x89PNG": ("png", "image/png"),
    b"\xff\xd8\xff": ("jpg", "image/jpeg"),
    b"\x93NUMPY": ("npy", "application/octet-stream"),
}

# One multipart file part: (field name, (filename, bytes, content type)).
FilePart = tuple[str, tuple[str, bytes, str]]


def parse_target(target: Any) -> Any:
    """The spec's `target` from `"predicted"`, `"label"` (each item's own label), `"class:K"`,
    `"topk:K"`, `"layer:NAME:C"`, an int (a class index) or a dict passed through as is."""
    if target is None or isinstance(target, dict):
        return target
    if isinstance(target, bool):
        raise ValueError(f"target must be {TARGET_HELP}, got {target!r}")
    if isinstance(target, int):
        return {"class": target}
    text = str(target).strip()
    if text in ("predicted", "label"):
        return text
    kind, _, rest = text.partition(":")
    try:
        if kind == "class":
            return {"class": whole_number(rest, "class")}
        if kind == "topk":
            return {"topk": whole_number(rest, "topk")}
        if kind == "layer":
            name, _, channel = rest.rpartition(":")
            if name:
                return {"layer": name, "channel": whole_number(channel, "channel")}
    except ValueError:
        pass
    raise ValueError(f"target must be {TARGET_HELP}, got {target!r}")


def _value(text: str) -> Any:
    """A method parameter's value from text: an int, else a float, else the text itself.
    Only ASCII counts as a number (`int` would also read `"٥٠"` as 50)."""
    if text.isascii():
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return text


def parse_method(method: Any) -> str | dict[str, Any]:
    """A `methods` entry from a name (`"gradient"`), a name with parameters
    (`"smoothgrad:samples=50,noise=0.2"`) or an object (`{"name": "smoothgrad", ...}`)."""
    if isinstance(method, dict):
        if not isinstance(method.get("name"), str):
            raise ValueError(f'a method object needs a "name", got {method!r}')
        return dict(method)
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"a method is a name or an object, got {method!r}")
    name, sep, rest = method.strip().partition(":")
    if not sep:
        return name
    params: dict[str, Any] = {"name": name}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"method {method!r}: parameters are key=value pairs separated by "
                             f"commas, got {pair!r}")
        params[key.strip()] = _value(value.strip())
    return params


def job_spec(
    model: str,
    methods: Iterable[Any] | str | dict[str, Any] | None = None,
    target: Any = None,
    reduce: str | None = None,
    outputs: Iterable[str] | str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The JSON spec of `POST /v1/jobs`; fields left as None take the service's defaults.

    `fields` are passed through as they are: `kind`, `seed`, `retention_s`, `notify`,
    `map_dtype`, `write`, `audit`, and the fields of other job kinds; a `top_activations`
    job's `channels` may also be text (`"0-15"`, `"1,4,9"`).
    """
    spec: dict[str, Any] = {"model": model}
    if methods is not None:
        if isinstance(methods, (str, dict)):
            methods = [methods]
        spec["methods"] = [parse_method(m) for m in methods]
    if target is not None:
        spec["target"] = parse_target(target)
    if reduce is not None:
        spec["reduce"] = reduce
    if outputs is not None:
        spec["outputs"] = [outputs] if isinstance(outputs, str) else list(outputs)
    spec.update({k: v for k, v in fields.items() if v is not None})
    if spec.get("kind") == TOP_ACTIVATIONS and "channels" in spec:
        spec["channels"] = parse_channels(spec["channels"])
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


def _entry(value: Any) -> Any:
    """An inline input: a storage URI, or an object `{"uri", "id", "label", "box", "mask"}`."""
    if isinstance(value, dict):
        if not is_uri(value.get("uri")):
            raise ValueError(f'an inline input needs a storage "uri" (s3://… or file:///…), '
                             f"got {value!r}")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()
                if v is not None}
    return {"uri": value}


def build_submit(
    inputs: Any, spec: dict[str, Any], dataset: Any = None
) -> tuple[dict[str, Any] | None, dict[str, str] | None, list[FilePart] | None]:
    """`(json, data, files)` for httpx: a JSON body for a data set or storage URIs (plain or
    as objects with `id`, `label`, `box`, `mask`), or for a kind that needs no inputs
    (`visualize`) given none; else multipart file parts."""
    if dataset is not None:
        if inputs is not None:
            raise ValueError("submit takes either inputs or a dataset, not both")
        raw = dataset.to_json() if hasattr(dataset, "to_json") else dict(dataset)
        return ({**spec, "dataset": raw}, None, None)
    if inputs is None:
        if spec.get("kind") in KINDS_WITHOUT_INPUTS:
            return (dict(spec), None, None)
        raise ValueError("submit needs inputs or a dataset")
    if isinstance(inputs, (str, Path, bytes, bytearray, dict)) or not isinstance(
        inputs, Iterable
    ) or (hasattr(inputs, "__array__") and getattr(inputs, "ndim", 0) == 3):
        inputs = [inputs]  # one input given on its own
    inputs = list(inputs)
    if not inputs:
        raise ValueError("submit needs at least one input")
    inline = [is_uri(v) or isinstance(v, dict) for v in inputs]
    if all(inline):
        return ({**spec, "inputs": [_entry(v) for v in inputs]}, None, None)
    if any(inline):
        raise ValueError("submit takes either storage URIs or files/arrays, not both in one job")
    files = [("images", _file_part(i, v)) for i, v in enumerate(inputs)]
    return (None, {"spec": json.dumps(spec)}, files)
