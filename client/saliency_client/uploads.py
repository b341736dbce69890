"""The multipart body of `POST /v1/models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREPROCESSING = ("input_size", "resize", "mean", "std", "class_names")


TRANSFORMERS = "transformers"  # the architecture of a Hugging Face bundle


def model_registration(
    name: str,
    num_classes: int | None,
    artifacts: dict[str, str | Path | None],
    architecture: str | None,
    extra: dict[str, Any],
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """`(data, files)`: the `spec` part and one file part, the one of `artifacts` (`weights`,
    `program` or `bundle`: a file path or None each) that is given. A bundle's spec may
    leave out `num_classes` and the preprocessing: they come from the bundle."""
    unknown = set(extra) - set(PREPROCESSING)
    if unknown:
        raise TypeError(f"unknown model spec fields {sorted(unknown)}; known: {PREPROCESSING}")
    given = [(part, path) for part, path in artifacts.items() if path is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of weights (.safetensors), program (.pt2) or "
                         "bundle (a save_pretrained folder as .zip or .tar.gz)")
    (part, path), = given
    spec: dict[str, Any] = {"name": name}
    if num_classes is not None:
        spec["num_classes"] = num_classes
    if architecture is None and part == "bundle":
        architecture = TRANSFORMERS
    if architecture is not None:
        spec["architecture"] = architecture
    for key, value in extra.items():
        if value is not None:
            spec[key] = list(value) if isinstance(value, tuple) else value
    path = Path(path)
    files = [(part, (path.name, path.read_bytes(), "application/octet-stream"))]
    return {"spec": json.dumps(spec)}, files
