"""Data sets as teams store them, on the real stack (local and S3 storage): WebDataset shards
written by webdataset's `ShardWriter`, Hugging Face data sets written by `datasets`
(`to_parquet`, `save_to_disk`). Every item's map equals the map of the same image in a job
over a folder of the same images; labels and boxes arrive; a bad member, a bad row and a
corrupt shard fail their items alone."""

from __future__ import annotations

import io
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from waiting import job_final

from e2e.helpers import (
    all_items,
    dataset_uri,
    download,
    image_bytes,
    norm_error,
    put_in_dataset_root,
)

N = 6  # good images; image i has label i % 10 (classes of the tiny model)
TOLERANCE = 1e-3  # float16 maps (the API's map tolerance)


def _image(i: int) -> bytes:
    return image_bytes(1200 + i, size=36)


def _upload(stack, local: Path, rel: str) -> str:
    """Every file under `local` put under `rel` in the data-set root; the folder's URI."""
    for path in sorted(local.rglob("*")):
        if path.is_file():
            put_in_dataset_root(stack, f"{rel}/{path.relative_to(local).as_posix()}",
                             path.read_bytes())
    return dataset_uri(stack, rel)


def _run(session, stack, model: str, dataset: dict) -> tuple[dict, list[dict]]:
    response = session.post(f"{stack.url}/v1/jobs", json={
        "model": model, "dataset": dataset, "target": "label", "methods": ["gradient"]},
        timeout=30)
    assert response.status_code == 202, response.text
    job = job_final(session, stack.url, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    return job, all_items(session, stack.url, job["id"], limit=50)


def _map(session, stack, item: dict) -> np.ndarray:
    (out,) = item["outputs"]
    return np.load(io.BytesIO(download(session, stack, out["npy"])))


@pytest.fixture(scope="module")
def folder_maps(stack, stack_model):
    """The reference: the images as a folder of class folders (`labels: folder`), each
    image's map by image number."""
    session = stack.session()
    run = f"folder-{time.monotonic_ns()}"
    for i in range(N):
        put_in_dataset_root(stack, f"{run}/{i % 10}/{i:03d}.png", _image(i))
    _, items = _run(session, stack, stack_model.name,
                    {"prefix": dataset_uri(stack, run), "labels": "folder"})
    assert [i["label"] for i in items] == list(range(N))
    return {int(item["input"].rsplit("/", 1)[1][:3]): _map(session, stack, item)
            for item in items}


def _same_maps(session, stack, items: list[dict], folder_maps: dict) -> None:
    assert len(items) == len(folder_maps)
    for n, item in enumerate(items):
        assert item["status"] == "succeeded" and item["label"] == n % 10, item
        assert item["outputs"][0]["target"] == {"class": n % 10}
        assert norm_error(_map(session, stack, item), folder_maps[n]) <= TOLERANCE, n


def test_webdataset_shards_round_trip(stack, stack_model, alice, folder_maps, tmp_path):
    local = tmp_path / "shards"
    local.mkdir()
    with wds.ShardWriter(str(local / "pets-%06d.tar"), maxcount=4, verbose=0) as sink:
        for i in range(N + 1):
            if i == 2:  # a sample whose image member is missing: it fails alone
                sink.write({"__key__": "broken", "cls": 1, "txt": "no image here"})
            sample = {"__key__": f"{i:03d}", "png": _image(i), "cls": i % 10}
            if i < N:
                if i == 1:
                    sample["json"] = {"box": [2, 3, 30, 31], "note": "boxed"}
                sink.write(sample)
    (local / "pets-000002.tar").write_bytes(b"not a tar at all" * 64)  # a corrupt shard
    run = f"wds-{time.monotonic_ns()}"
    folder = _upload(stack, local, run)
    pattern = f"{folder}/pets-{{000000..000002}}.tar"
    job, items = _run(alice, stack, stack_model.name, {"webdataset": pattern})
    assert job["dataset"] == {"webdataset": pattern}
    assert (job["progress"]["total"], job["progress"]["failed"]) == (N + 2, 2)

    good = [i for i in items if i["status"] == "succeeded"]
    shards = [0, 0, 0, 1, 1, 1]  # four members a shard, the broken sample among the first
    assert [i["id"] for i in good] == [f"pets-00000{s}/{n:03d}" for n, s in enumerate(shards)]
    assert [i["input"] for i in good] == [f"{folder}/pets-00000{s}.tar#{n:03d}"
                                          for n, s in enumerate(shards)]
    in_box = [i["outputs"][0]["metrics"]["energy_in_box"] for i in good]  # the box arrived
    assert 0 < in_box[1] <= 1 and in_box[:1] + in_box[2:] == [None] * (N - 1)
    _same_maps(alice, stack, good, folder_maps)
    broken, corrupt = (i for i in items if i["status"] == "failed")
    assert broken["id"] == "pets-000000/broken"
    assert broken["error"] == (f"{folder}/pets-000000.tar#broken: has no image member (jpg, "
                               "jpeg, png, webp, npy); its members: cls, txt")
    assert corrupt["id"] == "pets-000002" and corrupt["error"] == (
        f"{folder}/pets-000002.tar: not a readable tar shard (not a tar archive (no ustar "
        "header at byte 0)); its samples from there on are not run")


@pytest.fixture(scope="module")
def hub(stack, tmp_path_factory) -> dict[str, str]:
    """One data set in both of `datasets`' layouts, uploaded: a Parquet split (`to_parquet`,
    two files as the Hub names them, and a third written from file paths, as a table built
    from `Image()` paths is kept) and a `save_to_disk` folder."""
    local = tmp_path_factory.mktemp("hub")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(
        names=[f"class-{c}" for c in range(10)])})
    images = [{"bytes": _image(i), "path": None} for i in range(N)]
    images.insert(3, {"bytes": b"these bytes are no image", "path": None})
    labels = [i % 10 for i in range(N)]
    labels.insert(3, 0)
    rows = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    data = local / "parquet" / "data"
    data.mkdir(parents=True)
    rows.select(range(4)).to_parquet(str(data / "validation-00000-of-00003.parquet"))
    rows.select(range(4, N + 1)).to_parquet(str(data / "validation-00001-of-00003.parquet"))
    paths_only = pa.table({"image": [{"bytes": None, "path": "/photos/cat.png"}],
                           "label": [0]}).replace_schema_metadata(
        features.arrow_schema.metadata)
    pq.write_table(paths_only, data / "validation-00002-of-00003.parquet")
    rows.select(range(4)).to_parquet(str(data / "train-00000-of-00001.parquet"))
    datasets.DatasetDict({"validation": rows, "train": rows.select(range(2))}).save_to_disk(
        str(local / "disk"))
    run = f"hf-{time.monotonic_ns()}"
    return {name: _upload(stack, local / name, f"{run}/{name}") for name in ("parquet", "disk")}


@pytest.mark.parametrize("layout", ["parquet", "disk"])
def test_hugging_face_data_sets_round_trip(stack, stack_model, alice, folder_maps, hub,
                                           layout):
    dataset = {"huggingface": hub[layout], "split": "validation"}
    job, items = _run(alice, stack, stack_model.name, dataset)
    assert job["dataset"] == dataset
    bad = items.pop(3)
    assert bad["status"] == "failed" and "not an accepted format" in bad["error"]
    if layout == "parquet":
        paths_only = items.pop()
        assert paths_only["id"] == "data/validation-00002-of-00003/0"
        assert paths_only["error"] == (
            f"{hub['parquet']}/data/validation-00002-of-00003.parquet#0: its image has no "
            "bytes, only a path (/photos/cat.png): save the data set with its images embedded")
        assert [i["id"] for i in items] == ([f"data/validation-00000-of-00003/{r}"
                                             for r in (0, 1, 2)]
                                            + [f"data/validation-00001-of-00003/{r}"
                                               for r in (0, 1, 2)])
    else:
        assert [i["id"] for i in items] == [f"validation/data-00000-of-00001/{r}"
                                            for r in (0, 1, 2, 4, 5, 6)]
    _same_maps(alice, stack, items, folder_maps)  # ClassLabel indices: no class names


def test_container_data_sets_are_refused_at_submission_naming_the_field(stack, stack_model,
                                                                        alice):
    folder = dataset_uri(stack, f"none-{time.monotonic_ns()}")
    for dataset, field, says in (
            ({"webdataset": f"{folder}/s-{{000000..099999}}.tar", "label_field": "x"}, None,
             None),
            ({"webdataset": f"{folder}/s-{{0..100000}}.tar"}, "dataset.webdataset",
             "more than the limit of 100,000"),
            ({"webdataset": f"{folder}/s-{{0..9}}.tar", "huggingface": folder}, "dataset",
             "give one of"),
            ({"huggingface": folder, "columns": ["image"]}, "dataset.columns",
             "is not a field of a huggingface data set"),
            ({"huggingface": "s3://another-bucket/hf"}, "dataset.huggingface",
             "is not in your area"),
    ):
        response = alice.post(f"{stack.url}/v1/jobs", json={
            "model": stack_model.name, "dataset": dataset}, timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        if field is None:  # a well-formed pattern whose first shard does not exist
            assert error["message"] == (f"dataset.webdataset: no object at "
                                        f"'{folder}/s-000000.tar'")
            continue
        assert error["message"].startswith(f"{field}: ") and says in error["message"], error
