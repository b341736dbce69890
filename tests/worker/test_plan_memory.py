"""Planning a WebDataset prefix of 1,000 shards, or a Parquet data set of 1,000 files, holds
what planning 10 does: the planner's peak RSS, measured in a fresh process
(`bench/planner.py`), stays within 10 % or 20 MB (whichever is larger) of the small one's."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack import start_redis

PROBE = Path(__file__).resolve().parents[2] / "bench" / "planner.py"
PER_FILE = 40  # samples per shard, rows per file: 40,000 items at 1,000
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
       b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc```\x00\x00\x00\x04\x00\x01\xf6\x178U\x00"
       b"\x00\x00\x00IEND\xaeB`\x82")


def _shards(folder: Path, count: int) -> dict:
    folder.mkdir(parents=True)
    for s in range(count):
        with tarfile.open(folder / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(PER_FILE):
                for ext, data in (("png", PNG), ("cls", str(i % 10).encode())):
                    info = tarfile.TarInfo(f"{s:06d}{i:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return {"webdataset": folder.as_uri() + "/"}


def _parquet(folder: Path, count: int) -> dict:
    (folder / "data").mkdir(parents=True)
    table = pa.table({"image": [{"bytes": PNG, "path": None}] * PER_FILE,
                      "label": list(range(PER_FILE))})
    for f in range(count):
        pq.write_table(table, folder / "data" / f"train-{f:05d}-of-{count:05d}.parquet")
    return {"huggingface": folder.as_uri()}


def _peak(tmp: Path, name: str, root: Path, dataset: dict) -> dict:
    redis = start_redis(tmp / f"redis-{name}")
    try:
        out = subprocess.run(
            [sys.executable, str(PROBE), redis.url, str(tmp / f"storage-{name}"), str(root),
             str(tmp / f"data-{name}"), json.dumps(dataset)],
            check=True, capture_output=True, text=True, timeout=300)
    finally:
        redis.stop()
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("write", [_shards, _parquet], ids=["webdataset", "parquet"])
def test_planning_1000_files_holds_what_planning_10_does(tmp_path, write):
    root = tmp_path / "root"
    small = _peak(tmp_path, "small", root, write(root / "small", 10))
    large = _peak(tmp_path, "large", root, write(root / "large", 1000))
    assert (small["total"], large["total"]) == (10 * PER_FILE, 1000 * PER_FILE)
    assert (small["error"], large["error"]) == (None, None)
    allowed = max(0.1 * small["peak_rss_mb"], 20.0)
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    assert growth <= allowed, (small, large)
