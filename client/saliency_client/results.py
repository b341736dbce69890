"""A job's results file and report on the client side: rows, a DataFrame, headline figures.

`results()` reads the JSON-lines form, so it needs nothing beyond the standard library;
`results_frame()` reads the Parquet form with pandas and pyarrow, imported only then, on the
calling thread alone (see `frame`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saliency_client.errors import MissingDependency

FORMATS = ("parquet", "csv", "jsonl")
RESULTS_FILE = "results.parquet"
REPORT_FILE = "report.json"


def parse_rows(body: bytes) -> list[dict[str, Any]]:
    """The rows of a JSON-lines results file."""
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def pandas() -> Any:
    """The pandas module, once pyarrow is known to be there too; else MissingDependency."""
    try:
        import pandas as pd
        import pyarrow  # noqa: F401 - pandas reads Parquet through it
    except ImportError as exc:
        raise MissingDependency(
            f"results_frame() needs pandas and pyarrow ({exc.name} is missing): "
            "pip install pandas pyarrow; or use results(), a list of dicts") from exc
    return pd


def _nullable_dtypes(pd: Any, pa: Any) -> dict[Any, Any]:
    """Arrow types -> pandas' nullable dtypes (what `dtype_backend="numpy_nullable"` gives)."""
    ints = {getattr(pa, f"{sign}int{bits}")(): getattr(pd, f"{sign.upper()}Int{bits}Dtype")()
            for sign in ("", "u") for bits in (8, 16, 32, 64)}
    return {**ints, pa.bool_(): pd.BooleanDtype(), pa.float32(): pd.Float32Dtype(),
            pa.float64(): pd.Float64Dtype(), pa.string(): pd.StringDtype(),
            pa.large_string(): pd.StringDtype()}


def frame(pd: Any, parquet: bytes) -> Any:
    """A DataFrame of a Parquet results file, with nullable dtypes (Int32, boolean, string),
    so a missing label stays missing rather than turning the column into floats.

    Read from an in-memory buffer with Arrow's threads off: `pd.read_parquet` goes through
    pyarrow.dataset, whose thread pool outlives the call, and native threads torn down at
    interpreter exit can abort it (`terminate called without an active exception`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.ParquetFile(pa.BufferReader(parquet)).read(use_threads=False,
                                                          use_pandas_metadata=True)
    return table.to_pandas(use_threads=False, types_mapper=_nullable_dtypes(pd, pa).get)


def format_of(path: str | Path, given: str | None = None) -> str:
    """The results format: `given`, else the file's extension (`.parquet`, `.csv`, `.jsonl`)."""
    fmt = given or Path(path).suffix.lstrip(".").lower()
    if fmt == "pq":
        fmt = "parquet"
    if fmt not in FORMATS:
        raise ValueError(f"results format must be one of {list(FORMATS)} (from --format or the "
                         f"file's extension), got {fmt or path!r}")
    return fmt


def _scalars(data: dict[str, Any], prefix: str = "", depth: int = 2) -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float, str, bool)) or value is None:
            out.append((name, value))
        elif isinstance(value, dict) and depth > 1:
            out.extend(_scalars(value, name + ".", depth - 1))
    return out


def headline(report: dict[str, Any], limit: int = 16) -> list[str]:
    """The report's headline figures: its numbers and words at the first two levels, as
    `name: value` lines (the kind first), lists and deeper detail left to the file."""
    lines = []
    for name, value in _scalars(report)[:limit]:
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"{name}: {value}")
    return lines
