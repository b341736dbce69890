"""The multipart body of `POST /v1/models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREPROCESSING = ("input_size", "resize", "mean", "std", "class_names")


def model_registration(
    name: str,
    num_classes: int,
    weights: str | Path | None,
    program: str | Path | None,
    architecture: str | None,
    extra: dict[str, Any],
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """`(data, files)`: the `spec` part and either a `weights` or a `program` file part."""
    unknown = set(extra) - set(PREPROCESSING)
    if unknown:
        raise TypeError(f"unknown model spec fields {sorted(unknown)}; known: {PREPROCESSING}")
    if (weights is None) == (program is None):
        raise ValueError("give exactly one of weights (.safetensors) or program (.pt2)")
    spec: dict[str, Any] = {"name": name, "num_classes": num_classes}
    if architecture is not None:
        spec["architecture"] = architecture
    for key, value in extra.items():
        if value is not None:
            spec[key] = list(value) if isinstance(value, tuple) else value
    part, path = ("weights", Path(weights)) if weights is not None else ("program", Path(program))
    files = [(part, (path.name, path.read_bytes(), "application/octet-stream"))]
    return {"spec": json.dumps(spec)}, files
