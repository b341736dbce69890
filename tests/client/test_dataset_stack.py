"""Data sets through the SDK on the real stack: upload a folder, one prefix job with folder
labels, its results as rows and as a DataFrame, the report, and the download."""

from __future__ import annotations

import json

import pytest
from saliency_client import ApiError, Client, JobStatus, RetryPolicy

METHODS = ["gradient", "guided_backprop"]
FAST = RetryPolicy(attempts=5, base=0.05, cap=0.2)


@pytest.fixture
def client(api_url):
    with Client(api_url, retry=FAST) as c:
        yield c


def _unsigned(data):
    """`data` with the query string cut off every URL in it."""
    if isinstance(data, dict):
        return {k: _unsigned(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_unsigned(v) for v in data]
    if isinstance(data, str) and data.startswith(("http://", "https://")):
        return data.split("?", 1)[0]
    return data


def _records(frame) -> list[dict]:
    """A DataFrame's rows as dicts, missing values as None (as in the JSON rows)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def test_a_prefix_job_on_an_uploaded_folder(client, tiny_model, image_folder, tmp_path):
    folder = image_folder(tmp_path / "pets", {"dog": 2, "cat": 1})  # sorted: cat 0, dog 1
    batches = []
    uploaded = client.upload(folder, prefix="sdk-pets", batch_size=2,
                             on_batch=lambda names, prefix: batches.append(names))
    assert batches == [["cat/000.png", "dog/000.png"], ["dog/001.png"]]
    assert uploaded.prefix.endswith("/sdk-pets/") and len(uploaded.uris) == 3
    assert client.roots().covering(uploaded.prefix)  # its own area: readable by its jobs

    job = client.submit(model=tiny_model, methods=METHODS, seed=1,
                        dataset=uploaded.dataset(labels="folder-sorted"))
    with pytest.raises(ApiError) as info:  # not final yet: no results file
        job.results()
    assert info.value.status == 409 and info.value.code == "not_ready"
    assert job.wait(timeout=90, progress=False).status is JobStatus.SUCCEEDED
    assert job.state.raw["dataset"]["labels"] == "folder-sorted"

    items = {item.index: item for item in job.items()}
    assert [items[i].label for i in range(3)] == [0, 1, 1]
    rows = job.results()
    assert sorted((r["index"], r["method"]) for r in rows) == [
        (i, m) for i in range(3) for m in METHODS]
    for row in rows:
        item = items[row["index"]]
        assert row["uri"] == item.input == uploaded.uris[row["index"]]
        assert row["label"] == item.label and row["status"] == "succeeded"
        assert row["predicted"] == item.prediction.class_index
        assert row["score"] == pytest.approx(item.prediction.score, rel=1e-6)
        assert row["correct"] == (row["predicted"] == row["label"])

    assert _records(job.results_frame()) == rows

    report = job.report()
    assert report["kind"] == "attribution" and report["counts"]["items"] == 3
    out = job.download(tmp_path / "out")
    assert (out / "results.parquet").read_bytes()[:4] == b"PAR1"
    # the same report, but for the expiry and signature of its pictures' signed URLs
    assert _unsigned(json.loads((out / "report.json").read_text())) == _unsigned(report)
    assert len(list(out.glob("*.npy"))) == 6 and (out / "results.jsonl").exists()


def test_inline_inputs_with_labels_and_ids(client, tiny_model, image_folder, tmp_path):
    uploaded = client.upload(image_folder(tmp_path / "two", {"a": 2}), prefix="sdk-inline")
    inputs = [{"uri": uri, "id": f"photo-{i}", "label": 3} for i, uri in
              enumerate(uploaded.uris)]
    job = client.submit(inputs, model=tiny_model, target="label")
    job.wait(timeout=60, progress=False, check=True)
    rows = job.results()
    assert [(r["id"], r["label"], r["target"]) for r in rows] == [
        ("photo-0", 3, '{"class":3}'), ("photo-1", 3, '{"class":3}')]
    assert [item.id for item in job.items()] == ["photo-0", "photo-1"]
