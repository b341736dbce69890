"""`saliency top-activations` end to end on the real stack: a folder uploaded (and the same
job followed when run again), image files sent with the job, a folder read in place, a
manifest URI; the grids, each unit's files and report.json downloaded (by the sync and the
async SDK alike)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image
from saliency_client import AsyncClient, Client, cli
from waiting import model_ready

PNG = b"\x89PNG\r\n\x1a\n"


def _unit_files(out: Path, channel: int, rank: int, method: str) -> list[Path]:
    folder = out / f"channel-{channel:04d}"
    return [folder / f"{rank:02d}_{method}.png", folder / f"{rank:02d}_{method}.npy",
            folder / f"{rank:02d}_patch.png"]


def test_a_folder_is_uploaded_and_each_channel_downloaded(run, api_url, tiny_model,
                                                          image_folder, tmp_path):
    validated(api_url, tiny_model)
    folder = image_folder(tmp_path / "pictures", {"a": 2, "b": 2})
    out = tmp_path / "out"
    argv = ("top-activations", str(folder), "--model", tiny_model, "--layer", "layer1",
            "--channels", "0-1", "--k", "3", "--out", str(out), "--no-progress")
    code, stdout, err = run(*argv)
    assert code == 0, err
    assert "uploading 4 of 4 images" in err
    job_id = stdout.split()[0]
    assert f"{job_id}  succeeded  4/4 done, 6/6 projections" in stdout
    assert ("projection: deconvnet: the default, as a max-pooling precedes layer 'layer1'"
            in stdout)  # resnet18's layer1 follows its max-pool
    assert "warning:" not in stdout
    assert "channel    0  max " in stdout and str(out / "channel-0001.png") in stdout

    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "top_activations" and report["layer"] == "layer1"
    assert [c["channel"] for c in report["channels"]] == [0, 1]
    for channel in report["channels"]:
        assert (out / f"channel-{channel['channel']:04d}.png").read_bytes()[:8] == PNG
        activations = [unit["activation"] for unit in channel["top"]]
        assert len(activations) == 3 and activations == sorted(activations, reverse=True)
        for rank, unit in enumerate(channel["top"]):
            png, npy, patch = _unit_files(out, channel["channel"], rank, "deconvnet")
            assert png.read_bytes()[:8] == PNG and patch.read_bytes()[:8] == PNG
            assert np.load(npy).shape[-2:] == (32, 32)  # the model's input
            x0, y0, x1, y1 = unit["patch_box"]
            with Image.open(patch) as picture:
                assert picture.size == (x1 - x0, y1 - y0)
    assert (out / "results.parquet").read_bytes()[:4] == b"PAR1"
    assert (out / ".top-activations-state.json").exists()

    code, stdout, err = run(*argv)  # again: nothing uploaded, the same job followed
    assert code == 0, err
    assert "uploading 0 of 4 images (4 already uploaded)" in err
    assert f"following job {job_id}" in err and stdout.split()[0] == job_id

    async def download_async() -> Path:
        async with AsyncClient(api_url) as client:
            return await client.job(job_id).download(tmp_path / "async")

    def files(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    assert files(asyncio.run(download_async())) == files(out)


def test_image_files_go_with_the_job_and_the_json_answer_names_the_files(run, tiny_model,
                                                                         images, tmp_path):
    paths = [str(p) for p in images(3, size=32)]
    out = tmp_path / "out"
    code, stdout, err = run("top-activations", *paths, "--model", tiny_model, "--layer",
                            "layer2.0.conv1", "--channels", "4,2", "--k", "2", "--method",
                            "gradient", "--out", str(out), "--no-progress", "--json")
    assert code == 0, err
    answer = json.loads(stdout)
    assert answer["status"] == "succeeded" and answer["channels"] == [4, 2]
    assert not answer["in_place"] and answer["uploaded"] == 0
    report = json.loads(Path(answer["report"]).read_text())
    assert report["methods"] == answer["methods"] == ["gradient"]
    assert answer["methods_reason"] is None and "methods_reason" not in report
    inputs = {Path(p).name for p in paths}
    for channel in report["channels"]:
        assert {unit["input"] for unit in channel["top"]} <= inputs
        for rank in range(2):
            assert all(f.exists() for f in _unit_files(out, channel["channel"], rank,
                                                       "gradient"))
    assert not list(out.glob("channel-*/*deconvnet*"))


def test_a_folder_read_in_place_and_a_manifest_uri(run, api_url, tiny_model, tmp_path):
    with Client(api_url) as client:
        own_area = Path(urlsplit(client.roots().storage).path)
    folder = own_area / "top-activations-in-place"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        (folder / f"{i}.png").write_bytes(buf.getvalue())
    uris = {(folder / f"{i}.png").as_uri() for i in range(3)}
    code, stdout, err = run("top-activations", str(folder), "--model", tiny_model, "--layer",
                            "layer1", "--channels", "3", "--k", "2", "--out",
                            str(tmp_path / "out"), "--no-progress", "--json")
    assert code == 0, err
    assert "nothing to upload" in err
    answer = json.loads(stdout)
    assert answer["in_place"] and answer["uploaded"] == 0 and answer["channels"] == [3]
    report = json.loads(Path(answer["report"]).read_text())
    assert {unit["input"] for unit in report["channels"][0]["top"]} <= uris
    code, stdout, _ = run("status", answer["id"], "--json")
    assert json.loads(stdout)["dataset"]["prefix"] == folder.as_uri() + "/"

    manifest = own_area / "top-activations-manifest.jsonl"
    manifest.write_text("".join(json.dumps({"uri": u, "id": f"m{i}"}) + "\n"
                                for i, u in enumerate(sorted(uris))))
    code, stdout, err = run("top-activations", manifest.as_uri(), "--model", tiny_model,
                            "--layer", "layer1", "--channels", "3", "--k", "1", "--out",
                            str(tmp_path / "manifest"), "--no-progress", "--json")
    assert code == 0, err
    report = json.loads(Path(json.loads(stdout)["report"]).read_text())
    assert report["channels"][0]["top"][0]["id"] in {"m0", "m1", "m2"}


def test_an_unknown_layer_fails_the_job_or_the_request_with_its_name(run, tiny_model, images,
                                                                     tmp_path):
    code, _, err = run("top-activations", str(images(1, size=32)[0]), "--model", tiny_model,
                       "--layer", "layer9", "--channels", "0", "--out", str(tmp_path / "o"),
                       "--no-progress")
    assert code in (cli.EXIT_API, cli.EXIT_JOB_FAILED)
    assert "layer9" in err and err.count("\n") == 1


def validated(url: str, model: str) -> None:
    """Wait for the model's first load to end: until then its record does not say where
    max-pooling is, and the default projection stays DeconvNet."""
    model_ready(requests, url, model)


def test_on_a_model_without_max_pooling_the_default_is_guided_backprop_and_says_why(
        run, api_url, tiny_mobilenet, images, tmp_path):
    validated(api_url, tiny_mobilenet)
    paths = [str(p) for p in images(4, size=32)]
    out = tmp_path / "out"
    code, stdout, err = run("top-activations", *paths, "--model", tiny_mobilenet, "--layer",
                            "features.4", "--channels", "0,5", "--k", "3", "--out", str(out),
                            "--no-progress")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["methods"] == ["guided_backprop"]
    reason = report["methods_reason"]
    assert reason.startswith("guided_backprop: the default, as no max-pooling precedes layer "
                             "'features.4'")
    assert f"projection: {reason}" in stdout.splitlines()
    assert "warning:" not in stdout and not any(c.get("warnings") for c in report["channels"])
    for channel in (0, 5):
        assert all(f.exists() for f in _unit_files(out, channel, 0, "guided_backprop"))
    assert not list(out.glob("channel-*/*deconvnet*"))


def test_deconvnet_asked_for_there_prints_each_channels_warning(run, tiny_mobilenet, images,
                                                                tmp_path):
    paths = [str(p) for p in images(4, size=32)]
    argv = ("top-activations", *paths, "--model", tiny_mobilenet, "--layer", "features.4",
            "--channels", "0,5", "--k", "3", "--method", "deconvnet", "--no-progress")
    code, stdout, err = run(*argv, "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "projection: deconvnet (as asked)" in stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "methods_reason" not in report
    printed = [line for line in stdout.splitlines() if line.startswith("warning: ")]
    assert printed == [f"warning: channel {c['channel']}: {w}" for c in report["channels"]
                       for w in c["warnings"]]
    assert [c["channel"] for c in report["channels"]] == [0, 5] and len(printed) == 2
    for line in printed:
        assert "deconvnet: projected again on another of the top images" in line
        assert "no max-pooling precedes layer 'features.4'" in line

    code, stdout, err = run(*argv, "--out", str(tmp_path / "json"), "--json")
    assert code == 0, err
    answer = json.loads(stdout)
    assert answer["methods"] == ["deconvnet"] and answer["methods_reason"] is None
    assert answer["warnings"] == {str(c["channel"]): c["warnings"] for c in report["channels"]}
