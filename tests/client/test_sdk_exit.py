"""An SDK script leaves no thread behind: after a job with progress bars, a download, the
results as rows and as a DataFrame, the process holds the threads it held once pandas and
pyarrow were imported, and it exits 0 with nothing on stderr but the bars. A thread still
running at interpreter exit (tqdm's monitor, Arrow's thread pools) is what once ended a
script with `terminate called without an active exception`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, os, sys, threading
import pandas, pyarrow, pyarrow.parquet  # their own threads (jemalloc, BLAS) start here


def native_threads():
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip()
                  for t in os.listdir("/proc/self/task"))


before = native_threads()
from saliency_client import Client

url, model, out, image = sys.argv[1:]
with Client(url) as client:
    job = client.submit([image], model=model, methods=["gradient"]).wait(check=True)
    job.download(out)
    rows, frame = job.results(), job.results_frame()
print(json.dumps({"before": before, "after": native_threads(), "rows": len(rows),
                  "frame": len(frame), "python": [t.name for t in threading.enumerate()]}))
"""


def test_an_sdk_script_ends_with_no_thread_left(api_url, tiny_model, images, tmp_path):
    (image,) = images(1)
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run([sys.executable, "-c", SCRIPT, api_url, tiny_model,
                          str(tmp_path / "out"), str(image)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["rows"] == report["frame"] == 1
    assert report["python"] == ["MainThread"]
    assert report["after"] == report["before"]
    errors = [line for line in run.stderr.replace("\r", "\n").splitlines()
              if line.strip() and not line.startswith("job ")]
    assert errors == []


def test_results_frame_has_pandas_nullable_dtypes(tmp_path):
    """The frame read without Arrow's threads has the dtypes of
    `pd.read_parquet(dtype_backend="numpy_nullable")`: missing values stay missing."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from saliency_client import results

    table = pa.table({
        "index": pa.array([0, 1], pa.int64()), "label": pa.array([3, None], pa.int32()),
        "correct": pa.array([True, None]), "method": pa.array(["gradient", None]),
        "score": pa.array([0.5, None], pa.float32()),
        "border_energy": pa.array([0.25, None], pa.float64()),
        "row": pa.array([1, None], pa.uint16())})
    pq.write_table(table, tmp_path / "r.parquet")
    data = (tmp_path / "r.parquet").read_bytes()
    ours = results.frame(pd, data)
    theirs = pd.read_parquet(tmp_path / "r.parquet", dtype_backend="numpy_nullable")
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours["label"].isna().tolist() == [False, True]
