"""Hugging Face data sets read with pyarrow alone: each written by `datasets` itself
(`to_parquet`, `save_to_disk`), indexed from a Parquet footer or one pass over an Arrow
stream, the rows read back from the planned spans equal to what `datasets` reads, and rows
and files that cannot be read failing alone."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from shared.errors import InputError
from shared.storage.file import FileStorage
from shared.storage.hfdatasets import (
    data_files,
    index_arrow,
    index_parquet,
    read_head,
)
from shared.storage.partreader import Heads, read_parts

NAMES = ["cat", "dog", "fox"]
FEATURES = datasets.Features({"image": datasets.Image(),
                              "label": datasets.ClassLabel(names=NAMES)})


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _dataset(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(i), "path": None} for i in range(n)],
         "label": [i % 3 for i in range(n)]}, features=FEATURES)


def _rows(storage, key, sources):
    """Each source's sample read back through its part, one read per object."""
    return read_parts(storage, key, [s.part for s in sources], [s.name for s in sources],
                      Heads())


@pytest.fixture
def store(tmp_path):
    return FileStorage(tmp_path)


def test_parquet_rows_read_back_as_datasets_wrote_them(store, tmp_path):
    ds = _dataset(250)
    ds.to_parquet(str(tmp_path / "validation.parquet"), batch_size=100)  # 3 row groups
    fmt, files = data_files(store, "validation.parquet", None, "f")
    assert (fmt, list(files)) == ("parquet", ["validation.parquet"])
    sources = list(index_parquet(store, "validation.parquet", "s3://b/v.parquet", "v",
                                 "image", "label", False))
    assert [s.id for s in sources] == [f"v/{i}" for i in range(250)]
    assert {s.part.unit for s in sources} == {0, 1, 2}
    samples = _rows(store, "validation.parquet", sources)
    for i, sample in enumerate(samples):
        assert sample.image == _png(i)
        assert (sample.label, sample.label_index) == (NAMES[i % 3], i % 3)


def test_arrow_stream_batches_are_found_in_one_pass_as_pyarrow_reads_them(store, tmp_path):
    datasets.DatasetDict({"validation": _dataset(230), "train": _dataset(5)}).save_to_disk(
        str(tmp_path / "dd"))
    fmt, files = data_files(store, "dd/", "validation", "f")
    (key,) = files
    assert fmt == "arrow" and key.startswith("dd/validation/data-")
    with pytest.raises(InputError, match="splits"):
        data_files(store, "dd/", "test", "f")
    data = store.get(key)
    sources = list(index_arrow(lambda: store.reader(key), "s3://b/x.arrow", "x", "image",
                               "label", False))
    reference = [b.num_rows for b in pa.ipc.open_stream(data)]
    assert len(sources) == sum(reference) == 230
    spans = sorted({s.part.span for s in sources})
    assert [sum(1 for s in sources if s.part.span == span) for span in spans] == reference
    head = read_head(sources[0].part, data[slice(*sources[0].part.head)])
    assert head.equals(pa.ipc.open_stream(data).schema)
    samples = _rows(store, key, sources)
    assert [s.image for s in samples] == [_png(i) for i in range(230)]
    assert [s.label for s in samples] == [NAMES[i % 3] for i in range(230)]


def test_split_files_follow_the_hubs_naming(store, tmp_path):
    names = ["data/validation-00000-of-00002.parquet", "data/validation-00001-of-00002.parquet",
             "data/train-00000-of-00001.parquet", "validation.parquet",
             "default/validation/0000.parquet", "data/validation-extra.parquet",
             "data/validation-00000-of-00001-3f2a9c.parquet", "README.md"]
    for name in names:
        (tmp_path / "hub" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hub" / name).write_bytes(b"x")
    fmt, files = data_files(store, "hub/", "validation", "f")
    assert fmt == "parquet" and [f[len("hub/"):] for f in files] == [
        "data/validation-00000-of-00001-3f2a9c.parquet", "data/validation-00000-of-00002.parquet",
        "data/validation-00001-of-00002.parquet", "default/validation/0000.parquet",
        "validation.parquet"]


def test_a_row_with_only_a_path_and_a_row_without_a_label_fail_or_pass_alone(store, tmp_path):
    table = pa.table({"image": [{"bytes": _png(0), "path": None},
                                {"bytes": None, "path": "/photos/1.png"},
                                {"bytes": _png(2), "path": None}],
                      "label": [2, 0, -1]}).replace_schema_metadata(
        FEATURES.arrow_schema.metadata)
    pq.write_table(table, tmp_path / "t.parquet")
    sources = list(index_parquet(store, "t.parquet", "s3://b/t.parquet", "t", "image",
                                 "label", False))
    first, second, third = _rows(store, "t.parquet", sources)
    assert first.label == "fox"
    assert second == ("s3://b/t.parquet#1: its image has no bytes, only a path "
                      "(/photos/1.png): save the data set with its images embedded")
    assert third.image == _png(2) and third.label is None


def test_columns_are_checked_when_planning(store, tmp_path):
    pq.write_table(pa.table({"img": [b"x"], "fine_label": [1]}), tmp_path / "t.parquet")

    def index(image, label, given):
        return list(index_parquet(store, "t.parquet", "u", "t", image, label, given))

    with pytest.raises(InputError, match=r"dataset.image_column: u has no column 'image' "
                                         r"\(its columns: img, fine_label\)"):
        index("image", "label", False)
    with pytest.raises(InputError, match="dataset.label_column: u has no column 'label'"):
        index("img", "label", True)
    (source,) = index("img", "label", False)  # the default label column: none, no labels
    assert source.part.label is None
    (source,) = index("img", "fine_label", True)
    (sample,) = _rows(store, "t.parquet", [source])
    assert (sample.image, sample.label, sample.label_index) == (b"x", 1, None)


@pytest.mark.parametrize("damage", [lambda d: d[:-3], lambda d: d[:-8] + b"\0\0\0\x7fPAR1",
                                    lambda d: b"not parquet at all"])
def test_a_parquet_file_without_a_readable_footer_is_one_failed_item(store, tmp_path, damage):
    _dataset(3).to_parquet(str(tmp_path / "ok.parquet"))
    (tmp_path / "bad.parquet").write_bytes(damage((tmp_path / "ok.parquet").read_bytes()))
    (source,) = index_parquet(store, "bad.parquet", "s3://b/bad.parquet", "bad", "image",
                              "label", False)
    assert source.id == "bad" and source.error.startswith("s3://b/bad.parquet: ")


def test_an_arrow_stream_cut_short_keeps_its_whole_batches(store, tmp_path):
    _dataset(250).save_to_disk(str(tmp_path / "d"), max_shard_size="100MB")
    (key,) = data_files(store, "d/", None, "f")[1]
    data = store.get(key)
    batches = [b.num_rows for b in pa.ipc.open_stream(data)]
    (tmp_path / "cut.arrow").write_bytes(data[:len(data) // 2])
    *rows, broken = index_arrow(lambda: store.reader("cut.arrow"), "u", "cut", "image",
                                "label", False)
    assert len(rows) < 250 and len(rows) % batches[0] == 0 and all(r.part for r in rows)
    assert broken.error.startswith("u: not a readable Arrow stream file (truncated at byte ")
    assert [s.image for s in _rows(store, "cut.arrow", rows)] == [_png(i)
                                                                  for i in range(len(rows))]


def test_a_unit_that_cannot_be_decoded_fails_its_rows_with_one_message(store, tmp_path):
    _dataset(10).to_parquet(str(tmp_path / "v.parquet"))
    sources = list(index_parquet(store, "v.parquet", "u", "v", "image", "label", False))
    data = bytearray((tmp_path / "v.parquet").read_bytes())
    start, stop = sources[0].part.span
    data[start:stop] = bytes(stop - start)  # the row group's pages zeroed
    (tmp_path / "v.parquet").write_bytes(bytes(data))
    errors = _rows(store, "v.parquet", sources)
    assert len(set(errors)) == 1 and errors[0].startswith(
        f"u: bytes {start}..{stop} cannot be read as planned (")
