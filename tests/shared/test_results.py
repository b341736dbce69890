"""The results file's rows: one per item, method position and target rank."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from shared.results.records import ItemRecord, OutputRecord, Prediction
from shared.results.table import SCHEMA, convert, rows_of, write_parquet
from shared.status import ItemStatus


def _record(index: int, ranks: list[int | None]) -> ItemRecord:
    outputs = tuple(OutputRecord("gradient", 0, {"class": c}, {"npy": f"k/{index}-{c}.npy"},
                                 rank=rank) for c, rank in zip((4, 1, 7), ranks, strict=False))
    return ItemRecord(index, ItemStatus.SUCCEEDED, f"{index}.png", prediction=Prediction(4, 0.5,
                      None), outputs=outputs)


def test_each_rank_of_a_topk_target_is_its_own_row():
    rows = list(rows_of(_record(0, [0, 1, 2]), lambda _c: None))
    assert [(r["rank"], r["target"], r["npy"]) for r in rows] == [
        (0, '{"class":4}', "k/0-4.npy"), (1, '{"class":1}', "k/0-1.npy"),
        (2, '{"class":7}', "k/0-7.npy")]


def test_rows_of_other_targets_and_failed_items_have_no_rank():
    (single,) = rows_of(_record(0, [None]), lambda _c: None)
    failed = ItemRecord(1, ItemStatus.FAILED, "1.png", error="undecodable")
    (row,) = rows_of(failed, lambda _c: None)
    assert single["rank"] is None and row["rank"] is None and row["method"] is None


def test_the_rank_column_comes_last_in_every_format():
    assert SCHEMA.names[-1] == "rank"
    out = io.BytesIO()
    assert write_parquet([_record(0, [0, 1, 2]), _record(1, [None])], out, lambda _c: None) == 4
    out.seek(0)
    assert pq.read_table(out).column("rank").to_pylist() == [0, 1, 2, None]
    out.seek(0)
    header = b"".join(convert(out, "csv")).splitlines()[0]
    assert header.endswith(b',"rank"')
