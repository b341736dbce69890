"""The results file: one row per item × output, as Parquet, and its CSV and JSON-lines forms.

The finalizer writes `results.parquet` (pyarrow, streamed in row groups); the API serves it,
and converts it to CSV or JSON lines on the fly, one row group at a time. A failed (or
cancelled) item has one row, with `method` null and its `error`. Maps are pointed to, not
copied: `shard` and `row` (data-set jobs, `shared.storage.shards`) or `npy` (other jobs). An output
of a `{"topk": k}` target has its target's `rank` (0: the highest score), any other null; the
column comes last, so the columns before it keep their places in a CSV.

A `visualize` job's results file has columns of its own (`VISUALIZE_SCHEMA`): one row per item
(objective × start) with its curve's figures (`shared.results.curves`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from shared.results.curves import CurveSummary
from shared.results.records import ItemRecord
from shared.spec.visualize import VisualizeItem

METRICS = ("energy_in_box", "pointing_hit", "border_energy", "concentration")
SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("id", pa.string()),
    ("uri", pa.string()),
    ("label", pa.int32()),
    ("label_name", pa.string()),
    ("predicted", pa.int32()),
    ("predicted_name", pa.string()),
    ("score", pa.float32()),
    ("label_score", pa.float32()),
    ("correct", pa.bool_()),
    ("method", pa.string()),
    ("position", pa.int32()),
    ("target", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("shard", pa.string()),
    ("row", pa.int32()),
    ("npy", pa.string()),
    ("energy_in_box", pa.float32()),
    ("pointing_hit", pa.bool_()),
    ("border_energy", pa.float32()),
    ("concentration", pa.float32()),
    ("convergence_delta", pa.float32()),
    ("baseline_energy_in_box", pa.float32()),
    ("baseline_pointing_hit", pa.bool_()),
    ("rank", pa.int32()),
])
VISUALIZE_SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("objective", pa.string()),
    ("objective_index", pa.int32()),
    ("start", pa.int32()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("steps", pa.int32()),
    ("final", pa.float64()),
    ("final_mean", pa.float64()),
    ("best", pa.float64()),
    ("best_step", pa.int32()),
    ("npy", pa.string()),
])
ROW_GROUP = 8192
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv",
               "jsonl": "application/x-ndjson"}


def rows_of(record: ItemRecord, class_name) -> Iterator[dict[str, Any]]:
    """The rows of one item: one per output, or one with `method` null."""
    pred = record.prediction
    base = {
        "index": record.index, "id": record.id if record.id is not None else record.input,
        "uri": record.input, "label": record.label,
        "label_name": class_name(record.label) if record.label is not None else None,
        "predicted": pred.cls if pred else None,
        "predicted_name": pred.label if pred else None,
        "score": pred.score if pred else None, "label_score": record.label_score,
        "correct": record.correct, "status": record.status.value, "error": record.error,
        "baseline_energy_in_box": (record.baseline or {}).get("energy_in_box"),
        "baseline_pointing_hit": (record.baseline or {}).get("pointing_hit"),
    }
    if not record.outputs:
        yield {**base, "method": None, "position": None, "target": None, "rank": None}
        return
    for out in record.outputs:
        metrics = out.metrics or {}
        yield {
            **base, "method": out.method, "position": out.position,
            "target": json.dumps(out.target, separators=(",", ":")),
            "shard": out.map.shard if out.map else None,
            "row": out.map.row if out.map else None,
            "npy": out.files.get("npy"),
            **{m: metrics.get(m) for m in METRICS},
            "convergence_delta": out.convergence_delta, "rank": out.rank,
        }


def visualize_row(item: VisualizeItem, record: ItemRecord, curve: CurveSummary
                  ) -> dict[str, Any]:
    """The row of one `visualize` item: its objective and start, status, and its curve's
    figures (so far, for an item the job's end cut short)."""
    out = record.outputs[0] if record.outputs else None
    return {
        "index": record.index,
        "objective": json.dumps(item.objective.to_json(), separators=(",", ":")),
        "objective_index": item.objective_index, "start": item.start,
        "status": record.status.value, "error": record.error, "steps": curve.steps,
        "final": curve.final, "final_mean": curve.final_mean, "best": curve.best,
        "best_step": curve.best_step, "npy": out.files.get("npy") if out else None,
    }


def write_parquet(records: Iterable[ItemRecord], out: IO[bytes], class_name) -> int:
    """Stream records into a Parquet file; returns the number of rows."""
    return write_rows((row for record in records for row in rows_of(record, class_name)), out)


def write_rows(rows: Iterable[dict[str, Any]], out: IO[bytes], schema: pa.Schema = SCHEMA
               ) -> int:
    """Stream rows of `schema` into a Parquet file, in row groups; returns the number of
    rows."""
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema))
            n += len(batch)
    return n


def merge_parquet(parts: Iterable[IO[bytes]], out: IO[bytes], schema: pa.Schema = SCHEMA
                  ) -> int:
    """Concatenate results files of `schema` (parts written by `write_rows`) into one, a row
    group at a time; returns the number of rows."""
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        for part in parts:
            reader = pq.ParquetFile(part)
            for group in range(reader.num_row_groups):
                table = reader.read_row_group(group)
                writer.write_table(table)
                n += table.num_rows
        if n == 0:
            writer.write_table(pa.Table.from_pylist([], schema))
    return n


def convert(parquet: IO[bytes], fmt: str) -> Iterator[bytes]:
    """The rows of a Parquet results file as CSV or JSON lines, one row group at a time."""
    import pyarrow.csv as pacsv

    reader = pq.ParquetFile(parquet)
    for group in range(reader.num_row_groups):
        table = reader.read_row_group(group)
        if fmt == "csv":
            buf = io.BytesIO()
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=group == 0))
            yield buf.getvalue()
        else:
            yield b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n"
                           for row in table.to_pylist())
