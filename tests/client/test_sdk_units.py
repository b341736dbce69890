"""The SDK's pure parts: target and method parsing, request building, file names, data-set
helpers, results and report helpers, error decoding."""

from __future__ import annotations

import json

import httpx
import pytest
from saliency_client import Dataset, MissingDependency
from saliency_client import download as dl
from saliency_client import results as res
from saliency_client.datasets import batches, image_files, named_files
from saliency_client.errors import ApiError
from saliency_client.exchange import raise_for_error, settings
from saliency_client.progress import describe
from saliency_client.spec import build_submit, job_spec, parse_method, parse_target
from saliency_client.types import Item, JobState, JobStatus, Roots, parse_methods

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("predicted", "predicted"),
        ("label", "label"),
        ("class:281", {"class": 281}),
        ("topk:3", {"topk": 3}),
        ("layer:layer4.1.conv2:7", {"layer": "layer4.1.conv2", "channel": 7}),
        (5, {"class": 5}),
        ({"topk": 2}, {"topk": 2}),
    ],
)
def test_parse_target(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize("bad", ["class:", "class:x", "topk", "layer:7", "nope", True,
                                 "class:²", "class:٣", "topk:１", "class:1_0", "class:+1",
                                 "class:-1", "layer:layer1:٣"])
def test_parse_target_rejects(bad):
    with pytest.raises(ValueError, match="class:K"):
        parse_target(bad)


def test_job_spec_leaves_defaults_to_the_service():
    assert job_spec("m") == {"model": "m"}
    assert job_spec("m", "gradient", "class:1", "l2", ["png"]) == {
        "model": "m", "methods": ["gradient"], "target": {"class": 1}, "reduce": "l2",
        "outputs": ["png"],
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("gradient", "gradient"),
        ("smoothgrad:samples=50,noise=0.2", {"name": "smoothgrad", "samples": 50, "noise": 0.2}),
        ("smoothgrad: base = guided_backprop ,", {"name": "smoothgrad",
                                                  "base": "guided_backprop"}),
        ("gradcam:layer=layer4.1", {"name": "gradcam", "layer": "layer4.1"}),
        ("smoothgrad:samples=٥٠,noise=²", {"name": "smoothgrad", "samples": "٥٠",
                                            "noise": "²"}),  # the service names the field
        ({"name": "occlusion", "patch": 8}, {"name": "occlusion", "patch": 8}),
    ],
)
def test_parse_method_names_pairs_and_objects(given, expected):
    assert parse_method(given) == expected


@pytest.mark.parametrize("bad", ["smoothgrad:samples", "smoothgrad:=3", "", {"samples": 3}, 7])
def test_parse_method_rejects(bad):
    with pytest.raises(ValueError, match="method"):
        parse_method(bad)


def test_job_spec_passes_seed_kind_and_fields_through():
    spec = job_spec("m", ["gradient", "smoothgrad:samples=5"], "label", seed=3, kind="attribution",
                    retention_s=600, map_dtype="float32", notify=None)
    assert spec == {"model": "m", "methods": ["gradient", {"name": "smoothgrad", "samples": 5}],
                    "target": "label", "seed": 3, "kind": "attribution", "retention_s": 600,
                    "map_dtype": "float32"}
    assert job_spec("m", {"name": "smoothgrad"})["methods"] == [{"name": "smoothgrad"}]


def test_build_submit_inline_inputs_with_labels_and_boxes():
    body, data, files = build_submit(
        [{"uri": "s3://b/a.png", "id": "a", "label": 2, "box": (1, 2, 8, 9)}, "s3://b/b.png"],
        {"model": "m"})
    assert body == {"model": "m", "inputs": [
        {"uri": "s3://b/a.png", "id": "a", "label": 2, "box": [1, 2, 8, 9]},
        {"uri": "s3://b/b.png"}]}
    assert data is None and files is None
    with pytest.raises(ValueError, match="storage"):
        build_submit([{"uri": "cat.png"}], {"model": "m"})


def test_build_submit_a_dataset():
    prefix = Dataset(prefix="s3://b/pets/", labels="folder-sorted")
    assert build_submit(None, {"model": "m"}, prefix)[0] == {
        "model": "m", "dataset": {"prefix": "s3://b/pets/", "labels": "folder-sorted"}}
    assert build_submit(None, {"model": "m"}, {"manifest": "s3://b/m.jsonl"})[0] == {
        "model": "m", "dataset": {"manifest": "s3://b/m.jsonl"}}
    with pytest.raises(ValueError, match="not both"):
        build_submit(["s3://b/a.png"], {"model": "m"}, prefix)
    with pytest.raises(ValueError, match="inputs or a dataset"):
        build_submit(None, {"model": "m"})
    with pytest.raises(ValueError, match="one of them"):
        Dataset(prefix="s3://b/p/", manifest="s3://b/m.jsonl")
    with pytest.raises(ValueError, match="labels"):
        Dataset(prefix="s3://b/p/", labels="by-folder")


def test_datasets_in_place_as_the_api_takes_them():
    wds = Dataset(webdataset="s3://b/pets/shard-{000000..000099}.tar", label_field="species",
                  label_map={"tabby": 281})
    assert wds.to_json() == {"webdataset": "s3://b/pets/shard-{000000..000099}.tar",
                             "label_field": "species", "label_map": {"tabby": 281}}
    hf = Dataset(huggingface="s3://b/pets-hf/", split="validation", label_column="breed")
    assert build_submit(None, {"model": "m"}, hf)[0]["dataset"] == {
        "huggingface": "s3://b/pets-hf/", "split": "validation", "label_column": "breed"}
    for wrong, says in (({"webdataset": "s3://b/s.tar", "huggingface": "s3://b/h"}, "one of"),
                        ({"huggingface": "s3://b/h", "label_field": "cls"}, "no label_field"),
                        ({"webdataset": "s3://b/s.tar", "labels": "folder"}, "no labels"),
                        ({"manifest": "s3://b/m.jsonl", "label_map": {"a": 1}},
                         "no label_map")):
        with pytest.raises(ValueError, match=says):
            Dataset(**wrong)


def test_a_dataset_with_annotations():
    from saliency_client import Annotations

    coco = Annotations(coco="s3://b/instances.json", category_map={"18": "dog"},
                       objects="masks")
    assert Dataset(prefix="s3://b/p/", annotations=coco).to_json() == {
        "prefix": "s3://b/p/", "annotations": {"coco": "s3://b/instances.json",
                                               "objects": "masks",
                                               "category_map": {"18": "dog"}}}
    assert Dataset(manifest="s3://b/m.jsonl", annotations={"voc": "s3://b/v/"}).to_json() == {
        "manifest": "s3://b/m.jsonl", "annotations": {"voc": "s3://b/v/"}}
    assert Annotations(voc="s3://b/v/", key="id").to_json() == {"voc": "s3://b/v/",
                                                                "key": "id"}
    with pytest.raises(ValueError, match="one of them"):
        Annotations(coco="s3://b/a.json", voc="s3://b/v/")
    with pytest.raises(ValueError, match="key must be one of"):
        Annotations(coco="s3://b/a.json", key="image_id")
    with pytest.raises(ValueError, match="for COCO annotations only"):
        Annotations(voc="s3://b/v/", objects="masks")


def test_image_files_named_by_relative_path_without_hidden_ones(tmp_path):
    for name in ["b/2.PNG", "a/1.jpg", "a/notes.txt", ".hidden/3.png", "a/.4.png", "5.webp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(PNG)
    assert [n for n, _ in image_files(tmp_path)] == ["5.webp", "a/1.jpg", "b/2.PNG"]
    assert [n for n, _ in named_files([tmp_path / "a/1.jpg"], root=tmp_path)] == ["a/1.jpg"]
    with pytest.raises(ValueError, match="same name"):
        named_files([tmp_path / "a/1.jpg", tmp_path / "a/1.jpg"])


def test_batches_bound_files_and_bytes(tmp_path):
    files = []
    for i, size in enumerate([10, 10, 10, 30, 5]):
        (tmp_path / f"{i}.png").write_bytes(b"x" * size)
        files.append((f"{i}.png", tmp_path / f"{i}.png"))
    sizes = [[n for n, _ in b] for b in batches(files, batch_size=2, max_bytes=25)]
    assert sizes == [["0.png", "1.png"], ["2.png"], ["3.png"], ["4.png"]]


def test_build_submit_files_bytes_and_uris(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    body, data, files = build_submit([path, PNG], {"model": "m"})
    assert body is None and json.loads(data["spec"]) == {"model": "m"}
    assert [(f[0], f[1][0], f[1][2]) for f in files] == [
        ("images", "cat.png", "image/png"), ("images", "input-00001.png", "image/png")]
    body, data, files = build_submit(["s3://b/a.png", "s3://b/b.png"], {"model": "m"})
    assert body == {"model": "m", "inputs": [{"uri": "s3://b/a.png"}, {"uri": "s3://b/b.png"}]}
    assert data is None and files is None
    assert build_submit(str(path), {"model": "m"})[2][0][1][0] == "cat.png"  # one path alone


def test_build_submit_refuses_mixed_and_empty(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        build_submit(["s3://b/a.png", PNG], {"model": "m"})
    with pytest.raises(ValueError, match="at least one"):
        build_submit([], {"model": "m"})
    with pytest.raises(TypeError, match="input 0"):
        build_submit([object()], {"model": "m"})


def test_arrays_are_sent_as_float32_npy():
    np = pytest.importorskip("numpy")
    array = np.arange(12, dtype=np.float64).reshape(3, 2, 2)
    _, _, files = build_submit(array, {"model": "m"})  # one C×H×W array on its own
    name, payload, _ = files[0][1]
    assert name == "input-00000.npy"
    import io

    back = np.load(io.BytesIO(payload))
    assert back.dtype == np.float32 and back.shape == (3, 2, 2)


def test_file_names_are_predictable():
    item = Item.from_json({
        "index": 7, "input": "a.png", "status": "succeeded", "error": None,
        "prediction": {"class": 3, "score": 0.5},
        "outputs": [
            {"method": "gradient", "target": {"class": 3}, "npy": "u1", "png": "u2",
             "overlay": "u3"},
            {"method": "deconvnet", "target": {"layer": "layer4.0", "channel": 2}, "npy": "u4",
             "png": None, "overlay": None},
        ],
    })
    plan = dl.output_files(item)
    assert [names for _, names in plan] == [
        {"npy": "00007_gradient_class3.npy", "png": "00007_gradient_class3.png",
         "overlay": "00007_gradient_class3_overlay.png"},
        {"npy": "00007_deconvnet_layer4.0-ch2.npy"},
    ]
    line = dl.result_line(item, plan)
    assert line["index"] == 7 and line["files"][1]["npy"] == "00007_deconvnet_layer4.0-ch2.npy"


def test_two_configurations_of_one_method_get_distinct_files():
    outputs = [{"method": "smoothgrad", "target": {"class": 1}, "npy": f"u{i}", "png": None,
                "overlay": None, "params": {"samples": s}} for i, s in enumerate([5, 50])]
    item = Item.from_json({"index": 0, "status": "succeeded", "outputs": outputs})
    names = [n["npy"] for _, n in dl.output_files(item)]
    assert names == ["00000_smoothgrad_class1.npy", "00000_smoothgrad-2_class1.npy"]
    assert item.outputs[1].params == {"samples": 50}


def test_each_rank_of_a_topk_item_downloads_to_its_own_files():
    outputs = [{"method": "gradient", "target": {"class": c}, "rank": rank, "npy": f"u{rank}",
                "png": f"p{rank}", "overlay": None} for rank, c in enumerate([4, 1, 7])]
    item = Item.from_json({"index": 0, "status": "succeeded", "outputs": outputs})
    assert [o.rank for o in item.outputs] == [0, 1, 2]
    fetches = dl.fetches(dl.output_files(item))
    assert fetches == [("u0", "00000_gradient_class4.npy"), ("p0", "00000_gradient_class4.png"),
                       ("u1", "00000_gradient_class1.npy"), ("p1", "00000_gradient_class1.png"),
                       ("u2", "00000_gradient_class7.npy"), ("p2", "00000_gradient_class7.png")]


def test_api_error_carries_code_message_and_status():
    response = httpx.Response(404, json={"error": {"code": "not_found", "message": "no job 'x'"}})
    with pytest.raises(ApiError) as info:
        raise_for_error(response)
    assert (info.value.status, info.value.code, info.value.message) == (404, "not_found",
                                                                        "no job 'x'")
    with pytest.raises(ApiError, match="http_502"):
        raise_for_error(httpx.Response(502, text="<html>bad gateway</html>"))


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("SALIENCY_URL", "http://h:1/")
    monkeypatch.setenv("SALIENCY_API_KEY", "k")
    assert settings(None, None) == ("http://h:1", "k")
    assert settings("http://o:2", "j") == ("http://o:2", "j")


def test_job_state_and_methods_parse():
    state = JobState.from_json({"id": "j", "status": "running",
                                "progress": {"total": 4, "done": 1, "failed": 1}})
    assert state.status is JobStatus.RUNNING and not state.status.finished
    assert state.progress.done == 1 and state.kind == "attribution"
    methods = parse_methods({"methods": [
        {"name": "gradient", "description": "d"},
        {"name": "smoothgrad", "description": "s", "params": [
            {"name": "samples", "type": "int", "default": 25, "description": "n", "minimum": 1},
            {"name": "variant", "type": "choice", "default": "mean", "description": "v",
             "choices": ["mean", "squared"]}]}]})
    assert methods[0].name == "gradient" and methods[0].params == ()
    assert methods[1].defaults == {"samples": 25, "variant": "mean"}
    assert methods[1].params[1].choices == ("mean", "squared")


def test_progress_shows_planning_and_finalizing():
    planning = JobState.from_json({"id": "j", "status": "queued", "kind": "attribution",
                                   "progress": {"total": 0, "done": 0, "failed": 0,
                                                "planning": True}})
    assert planning.progress.planning and describe(planning) == "queued (planning)"
    closing = JobState.from_json({"id": "j", "status": "running", "progress": {
        "total": 9, "done": 3, "failed": 1, "finalizing": True, "skipped": 2}})
    assert closing.progress.skipped == 2
    assert describe(closing) == "running (finalizing), 1 failed"


def test_roots_cover_the_folders_under_them():
    roots = Roots.from_json({"storage": "file:///srv/data/t/default/",
                             "roots": ["file:///mnt/sets/", "s3://bucket/pets"]})
    assert roots.covering("file:///mnt/sets/cats") == "file:///mnt/sets/"
    assert roots.covering("file:///srv/data/t/default/mine/") == "file:///srv/data/t/default/"
    assert roots.covering("s3://bucket/pets/train") == "s3://bucket/pets"
    assert roots.covering("file:///mnt/sets-other/x") is None
    assert roots.covering("file:///home/me/pets") is None


def test_results_format_and_report_headline():
    assert res.format_of("r.parquet") == "parquet" and res.format_of("r.CSV") == "csv"
    assert res.format_of("rows.txt", "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="results format"):
        res.format_of("rows.txt")
    report = {"kind": "attribution", "counts": {"total": 4, "done": 3, "failed": 1},
              "accuracy": 0.123456, "clusters": [{"size": 2}]}
    assert res.headline(report) == ["kind: attribution", "counts.total: 4", "counts.done: 3",
                                    "counts.failed: 1", "accuracy: 0.1235"]


def test_results_frame_without_pandas_names_the_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(MissingDependency, match="pip install pandas pyarrow") as info:
        res.pandas()
    assert isinstance(info.value, ImportError)


def test_items_follow_every_cursor_and_wait_times_out(fake_api):
    from saliency_client import Client, WaitTimeout

    with Client("http://api.test", http=httpx.Client(transport=fake_api())) as client:
        job = client.job("j")
        assert [i.index for i in job.items(page_size=1)] == [0, 1, 2]
        with pytest.raises(WaitTimeout):
            job.wait(timeout=0.3, progress=False)
        assert job.status is JobStatus.RUNNING


def test_async_items_and_wait(fake_api):
    import asyncio

    from saliency_client import AsyncClient, JobFailed

    async def main():
        http = httpx.AsyncClient(transport=fake_api(status="failed"))
        async with AsyncClient("http://api.test", http=http) as client:
            job = client.job("j")
            indices = [i.index async for i in job.items()]
            await job.wait()
            with pytest.raises(JobFailed, match="job j failed"):
                await job.wait(check=True)
            return indices, job.status

    assert asyncio.run(main()) == ([0, 1, 2], JobStatus.FAILED)
