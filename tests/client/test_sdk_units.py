"""The SDK's pure parts: target parsing, request building, file names, error decoding."""

from __future__ import annotations

import json

import httpx
import pytest
from saliency_client import download as dl
from saliency_client.errors import ApiError
from saliency_client.spec import build_submit, job_spec, parse_target
from saliency_client.transport import raise_for_error, settings
from saliency_client.types import Item, JobState, JobStatus, parse_methods

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("predicted", "predicted"),
        ("class:281", {"class": 281}),
        ("topk:3", {"topk": 3}),
        ("layer:layer4.1.conv2:7", {"layer": "layer4.1.conv2", "channel": 7}),
        (5, {"class": 5}),
        ({"topk": 2}, {"topk": 2}),
    ],
)
def test_parse_target(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize("bad", ["class:", "class:x", "topk", "layer:7", "nope", True])
def test_parse_target_rejects(bad):
    with pytest.raises(ValueError, match="class:K"):
        parse_target(bad)


def test_job_spec_leaves_defaults_to_the_service():
    assert job_spec("m") == {"model": "m"}
    assert job_spec("m", "gradient", "class:1", "l2", ["png"]) == {
        "model": "m", "methods": ["gradient"], "target": {"class": 1}, "reduce": "l2",
        "outputs": ["png"],
    }


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
    assert state.progress.done == 1
    methods = parse_methods({"methods": [{"name": "gradient", "description": "d"}]})
    assert methods[0].name == "gradient"


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
