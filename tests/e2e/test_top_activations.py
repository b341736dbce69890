"""`top_activations` through the real stack, checked against plain PyTorch.

Two jobs (two layers of the seeded tiny resnet18, 16 uploads of 32×32, so four scan chunks
each) run on the file backend's worker and a second worker started for this module. Their
top-k sets and positions equal a brute-force scan of every image written here with forward
hooks alone; each projection equals the in-process engine's layer-position map of the same
unit, and its picture is that map cropped to the unit's patch; every URL of the report
loads; the methods given are echoed as given, with no reason and no warnings. A layer the
validated model lacks is refused at submission, and a job cancelled mid-scan (its methods
left to the service) ends `cancelled` with its report, the reason and results.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
import requests
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from stacks import MODEL_SPEC
from waiting import FINAL, job_final, model_ready, wait_until

from devstack import ROOT, start_worker
from e2e.helpers import all_items, submit
from shared.media.images import decode_image
from shared.spec.model import parse_model_spec
from shared.state.jobschema import WORKERS

LOGS = ROOT / "test-output" / "logs"
PREP = parse_model_spec(MODEL_SPEC).preprocessing
INPUTS = 16  # four scan chunks of SALIENCY_CHUNK_SIZE=4
JOBS = {
    "layer1": {"layer": "layer1", "channels": [0, 7, 33], "k": 5,
               "methods": ["deconvnet", "gradient"]},
    "layer2.1.conv1": {"layer": "layer2.1.conv1", "channels": [5, 100], "k": 4,
                       "methods": ["guided_backprop"]},
}


def picture(seed: int) -> np.ndarray:
    """A 32×32 RGB picture: a coloured background, noise of its own strength, a bright box."""
    rng = np.random.default_rng(1000 + seed)
    pixels = rng.normal(rng.uniform(40, 215, 3), rng.uniform(5, 60), (32, 32, 3))
    x0, y0 = rng.integers(0, 24, 2)
    side = int(rng.integers(4, 12))
    pixels[y0:y0 + side, x0:x0 + side] = rng.uniform(0, 255, 3)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def model_input(pixels: np.ndarray) -> torch.Tensor:
    """The model's input for a picture, read from its PNG as the worker reads an upload.

    Bit for bit the worker's input: the same values computed in another order differ by an
    ulp in a third of the pixels, which can move a maximum or a max-pool switch.
    """
    from worker.models.build import preprocess_image

    return preprocess_image(decode_image(png(pixels), 10**8), PREP)


@dataclass(frozen=True)
class Done:
    job: dict
    report: dict
    items: list[dict]


@pytest.fixture(scope="module")
def second_worker(file_backend):
    """A second worker on the file backend, once its pool process is warm: it then beats
    the fair queue's liveness set, so that chunks are sent to both workers at once."""
    worker = start_worker(file_backend.env, LOGS, name="worker-file-top")
    try:
        r = file_backend.redis()

        def beating() -> bool:
            worker.check_alive()
            return any(name.startswith("worker-file-top") for name in r.zrange(WORKERS, 0, -1))

        wait_until("the second worker beating the fair queue", beating, every=0.2)
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    return [picture(i) for i in range(INPUTS)]


@pytest.fixture(scope="module")
def model(tiny_weights) -> torch.nn.Module:
    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(load_file(str(tiny_weights)))
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def done(api_url, tiny_model, second_worker, pictures) -> dict[str, Done]:
    """Both jobs, sent together and run to the end by the two workers."""
    session = requests.Session()
    files = [(f"pic-{i:02d}.png", png(p)) for i, p in enumerate(pictures)]
    ids = {}
    for name, fields in JOBS.items():
        response = submit(session, api_url, {"kind": "top_activations", "model": tiny_model,
                                             **fields}, files)
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    out = {}
    for name, job_id in ids.items():
        job = job_final(session, api_url, job_id, timeout=240)
        assert job["status"] == "succeeded", job
        report = session.get(f"{api_url}/v1/jobs/{job_id}/report", timeout=30)
        assert report.status_code == 200, report.text
        out[name] = Done(job, report.json(), all_items(session, api_url, job_id, limit=100))
    return out


def brute_force(model: torch.nn.Module, pictures: list[np.ndarray], layer: str,
                channels: list[int], k: int) -> dict[int, list[tuple[int, float, list[int]]]]:
    """Per channel the top k (item, activation, [y, x]): each image's maximum over the
    layer's positions at its first row-major place, ranked by activation then item."""
    outputs = []
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda module, args, output: outputs.append(output))
    try:
        with torch.no_grad():
            for p in pictures:
                model(model_input(p)[None])
    finally:
        handle.remove()
    maps = torch.cat(outputs).numpy()  # N×C×H×W
    top = {}
    for channel in channels:
        entries = []
        for index, fmap in enumerate(maps[:, channel]):
            flat = int(np.argmax(fmap))  # numpy's argmax is the first maximum
            entries.append((index, float(fmap.flat[flat]), [flat // fmap.shape[1],
                                                            flat % fmap.shape[1]]))
        top[channel] = sorted(entries, key=lambda e: (-e[1], e[0]))[:k]
    return top


@pytest.mark.parametrize("name", list(JOBS))
def test_the_top_k_equal_a_brute_force_scan(done, model, pictures, name):
    fields, made = JOBS[name], done[name]
    report = made.report
    assert (report["kind"], report["layer"], report["k"]) == ("top_activations",
                                                              fields["layer"], fields["k"])
    expected = brute_force(model, pictures, fields["layer"], fields["channels"], fields["k"])
    assert [c["channel"] for c in report["channels"]] == fields["channels"]
    for channel in report["channels"]:
        want = expected[channel["channel"]]
        got = channel["top"]
        assert [t["index"] for t in got] == [w[0] for w in want], channel["channel"]
        assert [t["position"] for t in got] == [w[2] for w in want], channel["channel"]
        np.testing.assert_allclose([t["activation"] for t in got], [w[1] for w in want],
                                   rtol=1e-4, atol=1e-5)
        assert [t["input"] for t in got] == [f"pic-{w[0]:02d}.png" for w in want]
    assert made.job["progress"]["total"] == made.job["progress"]["done"] == INPUTS
    assert all(item["status"] == "succeeded" and item["outputs"] == [] for item in made.items)


def test_the_scan_ran_in_chunks_on_both_workers(done):
    for made in done.values():
        by_chunk = [{item["worker"] for item in made.items[i:i + 4]} for i in range(0, INPUTS, 4)]
        assert all(len(workers) == 1 for workers in by_chunk), by_chunk  # one worker a chunk
    workers = {item["worker"] for made in done.values() for item in made.items}
    assert len(workers) == 2, workers
    assert any(w.startswith("worker-file-top") for w in workers)


def norm_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", list(JOBS))
def test_the_projections_equal_the_engines_layer_position_maps(done, model, pictures, name):
    from shared.spec.targets import LayerTarget
    from worker.engine.core import Engine

    engine = Engine(model, mean=PREP.mean, std=PREP.std)
    fields = JOBS[name]
    checked = 0
    for channel in done[name].report["channels"]:
        units = channel["top"]
        x = torch.stack([model_input(pictures[unit["index"]]) for unit in units])
        targets = [LayerTarget(fields["layer"], channel["channel"], tuple(unit["position"]))
                   for unit in units]
        result = engine.attribute(x, fields["methods"], targets)
        for unit, image in zip(units, result.images, strict=True):
            assert list(unit["projections"]) == fields["methods"]
            for method, want in zip(fields["methods"], image.maps, strict=True):
                got = np.load(io.BytesIO(fetch(unit["projections"][method]["npy"])))
                assert got.shape == want.values.shape == (3, 32, 32)
                assert np.abs(want.values).max() > 0
                assert norm_error(got, want.values) < 1e-4, (channel["channel"], unit, method)
                checked += 1
    assert checked == len(fields["channels"]) * fields["k"] * len(fields["methods"])


@pytest.mark.parametrize("name", list(JOBS))
def test_every_grid_and_file_of_the_report_loads(done, name):
    fields = JOBS[name]
    for channel in done[name].report["channels"]:
        with Image.open(io.BytesIO(fetch(channel["grid"]))) as grid:
            assert grid.width > 32 and grid.height > 32
        for unit in channel["top"]:
            x0, y0, x1, y1 = unit["patch_box"]
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
            with Image.open(io.BytesIO(fetch(unit["patch"]))) as patch:
                assert patch.size == (x1 - x0, y1 - y0)
            for method in fields["methods"]:
                files = unit["projections"][method]
                with Image.open(io.BytesIO(fetch(files["png"]))) as crop:
                    assert crop.size == (x1 - x0, y1 - y0)
                assert np.load(io.BytesIO(fetch(files["npy"]))).dtype == np.float32


@pytest.mark.parametrize("name", list(JOBS))
def test_each_projection_picture_is_its_map_cropped_to_the_patch(done, name):
    """The `png` of a projection is its `npy` inside `patch_box`, drawn on its own (the
    window of the whole map, not the whole map shrunk), the size of the patch."""
    from shared.media.render import signed_rgb

    for channel in done[name].report["channels"]:
        for unit in channel["top"]:
            x0, y0, x1, y1 = unit["patch_box"]
            for method in JOBS[name]["methods"]:
                files = unit["projections"][method]
                whole = np.load(io.BytesIO(fetch(files["npy"])))
                with Image.open(io.BytesIO(fetch(files["png"]))) as crop:
                    pixels = np.asarray(crop.convert("RGB"))
                np.testing.assert_array_equal(pixels, signed_rgb(whole[:, y0:y1, x0:x1]))


@pytest.mark.parametrize("name", list(JOBS))
def test_methods_given_are_echoed_as_given_with_no_reason_or_warning(done, name):
    """DeconvNet asked for after a max-pool (and the other methods) are what they were: the
    job and report name the methods as before, with no reason and no channel warnings."""
    made = done[name]
    assert "methods_reason" not in made.job and "methods_reason" not in made.report
    assert made.report["methods"] == JOBS[name]["methods"]
    assert [m if isinstance(m, str) else m["name"] for m in made.job["methods"]] == JOBS[
        name]["methods"]
    assert not any("warnings" in channel for channel in made.report["channels"])


def fetch(url: str) -> bytes:
    response = requests.get(url, timeout=30)  # signed URLs: no key
    assert response.status_code == 200, (url, response.text[:200])
    return response.content


@pytest.mark.parametrize("name", list(JOBS))
def test_the_projections_progress_ends_all_done(done, name):
    fields = JOBS[name]
    due = len(fields["channels"]) * fields["k"] * len(fields["methods"])
    assert done[name].job["progress"]["projections"] == {"done": due, "due": due}


def test_a_layer_the_model_lacks_is_refused_at_submission_naming_the_nearest(
        api_url, tiny_model, pictures):
    session = requests.Session()
    assert model_ready(session, api_url, tiny_model)["status"] == "ready"
    response = submit(session, api_url, {"kind": "top_activations", "model": tiny_model,
                                         "layer": "layer2.1.conv", "channels": [0]},
                      [("a.png", png(pictures[0]))])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    assert error["message"].startswith("layer: ")
    assert "'layer2.1.conv'" in error["message"]
    nearest = error["message"].split("nearest: ", 1)[1].split(", ")
    assert {"layer2.1.conv1", "layer2.1.conv2"} <= set(nearest), error["message"]


def test_a_job_cancelled_mid_scan_ends_cancelled_with_its_report_and_results(
        api_url, tiny_model, file_backend, second_worker, pictures):
    session = requests.Session()
    storage = file_backend.storage()
    storage.put("incoming/top-cancel.png", png(pictures[3]))
    body = {"kind": "top_activations", "model": tiny_model, "layer": "layer1",
            "channels": [0, 1], "k": 3,
            "inputs": [{"uri": storage.uri("incoming/top-cancel.png")}] * 120}
    response = session.post(f"{api_url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    job = wait_until(f"job {job_id}'s first item done", lambda: session.get(
        f"{api_url}/v1/jobs/{job_id}", timeout=10).json(),
        until=lambda job: job["progress"]["done"] > 0 or job["status"] in FINAL, every=0.05)
    assert job["progress"]["done"] > 0, job  # not final with nothing done
    cancelled = session.delete(f"{api_url}/v1/jobs/{job_id}", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    job = job_final(session, api_url, job_id, timeout=120)
    assert job["status"] == "cancelled", job
    assert job["error"] == "cancelled by the client"
    assert 0 < job["progress"]["done"] < 120, job["progress"]

    report = session.get(f"{api_url}/v1/jobs/{job_id}/report", timeout=30)
    assert report.status_code == 200, report.text
    answer = report.json()
    reason = answer.pop("methods_reason")  # the methods were left to the service
    assert reason.startswith("deconvnet: the default, as a max-pooling precedes layer 'layer1'")
    assert answer == {"kind": "top_activations", "layer": "layer1", "k": 3,
                      "methods": ["deconvnet"], "channels": []}
    results = session.get(f"{api_url}/v1/jobs/{job_id}/results", params={"format": "jsonl"},
                          timeout=30)
    assert results.status_code == 200, results.text
    rows = [json.loads(line) for line in results.text.splitlines()]
    assert sum(row["status"] == "succeeded" for row in rows) == job["progress"]["done"]
    items = all_items(session, api_url, job_id, limit=200)
    statuses = {item["status"] for item in items}
    assert statuses == {"succeeded", "cancelled"}, statuses
    assert sum(item["status"] == "succeeded" for item in items) == job["progress"]["done"]
