"""Fixtures of the page tests: a model with class names, and real jobs of each kind whose pages
the browser tests open (made once per module, small: 32 px inputs, the tiny model)."""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from waiting import job_final

AUDIT_ITEMS = 24  # SpRAy clusters a predicted class of at least 20 items
AUDIT_METHODS = ["gradient", "guided_backprop"]


@dataclass(frozen=True)
class MadeJob:
    """A finished job on a stack: its JSON and, where final, its report."""

    url: str
    key: str | None
    job: dict
    report: dict


def chromium(profile: Path):
    """A headless Chromium (Debian's, with its chromedriver) with its profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def module_browser(tmp_path_factory):
    """One browser for the tests of a module that look at one page."""
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def named_model(api_url, tiny_weights) -> str:
    """The tiny resnet18 again, registered through the SDK with class names."""
    from saliency_client import Client

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    with Client(api_url) as client:
        return client.register_model("tiny-named", num_classes=10, weights=tiny_weights,
                                     architecture="resnet18", input_size=32, resize=32,
                                     class_names=names).name


def picture(seed: int, side: int = 40) -> tuple[bytes, list[int]]:
    """A PNG of a yellow square on a noisy grey background, and the square's box. The tiny
    model predicts class 8 for 21 of the first 24 (SpRAy needs a class of 20)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(90 + rng.integers(-20, 21, (side, side, 3)), 0, 255).astype(np.uint8)
    size = int(rng.integers(10, 20))
    x0, y0 = (int(v) for v in rng.integers(2, side - size - 2, 2))
    pixels[y0:y0 + size, x0:x0 + size] = (230, 200, 60)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), [x0, y0, x0 + size, y0 + size]


def put_dataset_file(backend, rel: str, data: bytes) -> str:
    """Write a file into the backend's local data-set root; its URI."""
    path = backend.dataset_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def run_job(session: requests.Session, url: str, **post) -> tuple[dict, dict]:
    """POST a job, wait until it is final; the job and its report."""
    response = session.post(f"{url}/v1/jobs", timeout=60, **post)
    assert response.status_code == 202, response.text
    job = job_final(session, url, response.json()["id"])
    assert job["status"] == "succeeded", job
    report = session.get(f"{url}/v1/jobs/{job['id']}/report", timeout=30)
    assert report.status_code == 200, report.text
    return job, report.json()


@pytest.fixture(scope="module")
def audited_job(stack, stack_model) -> MadeJob:
    """An attribution job over a labelled manifest with boxes (a third of its lines without an
    id), audited with the sanity check, on a stack with API keys (file storage: signed URLs;
    S3: presigned)."""
    run = f"audit-{time.monotonic_ns()}"
    lines = []
    for i in range(AUDIT_ITEMS):
        data, box = picture(i)
        put_dataset_file(stack.backend, f"{run}/img/{i}.png", data)
        line = {"uri": f"img/{i}.png", "label": 6 if i % 4 == 3 else 8, "box": box}
        if i % 3 != 1:  # the others are named by their URI, as a line without an id is
            line["id"] = f"square-{i}"
        lines.append(json.dumps(line))
    manifest = put_dataset_file(stack.backend, f"{run}/manifest.jsonl",
                                ("\n".join(lines) + "\n").encode())
    body = {"model": stack_model.name, "dataset": {"manifest": manifest},
            "methods": AUDIT_METHODS, "audit": {"sanity": {"sample": 4}}}
    key = stack.api_keys["alice"]
    job, report = run_job(stack.session(key), stack.url, json=body)
    return MadeJob(stack.url, key, job, report)


@pytest.fixture(scope="module")
def top_activations_job(stack, stack_model) -> MadeJob:
    """A `top_activations` job on a stack with API keys: three channels of `layer1`, the top
    3 of 6 uploads."""
    spec = {"kind": "top_activations", "model": stack_model.name, "layer": "layer1",
            "channels": [0, 1, 2], "k": 3}
    files = [("spec", (None, json.dumps(spec), "application/json"))]
    files += [("images", (f"square-{i}.png", io.BytesIO(picture(100 + i)[0])))
              for i in range(6)]
    key = stack.api_keys["alice"]
    job, report = run_job(stack.session(key), stack.url, files=files)
    return MadeJob(stack.url, key, job, report)


@pytest.fixture(scope="module")
def deconvnet_job(api_url, tiny_mobilenet) -> MadeJob:
    """DeconvNet on a model without max-pooling (a seeded MobileNetV2 at 32 px), whose maps
    cannot depend on the input: each output carries a warning."""
    session = requests.Session()
    job_spec = {"model": tiny_mobilenet, "methods": ["deconvnet", "gradient"]}
    files = [("spec", (None, json.dumps(job_spec), "application/json"))]
    files += [("images", (f"square-{i}.png", io.BytesIO(picture(200 + i)[0]))) for i in range(2)]
    job, report = run_job(session, api_url, files=files)
    return MadeJob(api_url, None, job, report)


@pytest.fixture(scope="module")
def mobilenet_deconvnet_top(api_url, tiny_mobilenet) -> MadeJob:
    """A `top_activations` job asking for DeconvNet on a model without max-pooling (a seeded
    MobileNetV2 at 32 px): every image gives a unit the same projection, which is warned
    about."""
    spec = {"kind": "top_activations", "model": tiny_mobilenet, "layer": "features.4",
            "channels": [0], "k": 3, "methods": ["deconvnet"]}
    files = [("spec", (None, json.dumps(spec), "application/json"))]
    files += [("images", (f"square-{i}.png", io.BytesIO(picture(400 + i)[0]))) for i in range(4)]
    job, report = run_job(requests.Session(), api_url, files=files)
    return MadeJob(api_url, None, job, report)


CLIPPED_ITEMS = 24
LONG_FOLDER = "holiday-photos-from-the-summer-of-2026/camera-roll-exported-at-full-resolution"


@pytest.fixture(scope="module")
def uri_audit(api_url, file_backend, tiny_mobilenet) -> MadeJob:
    """An audit of 24 labelled items without ids or boxes, named by their long URIs, with the
    sanity check, on a model without max-pooling (DeconvNet barely depends on the input)."""
    run = f"clipped-{time.monotonic_ns()}"
    lines = []
    for i in range(CLIPPED_ITEMS):
        uri = f"{LONG_FOLDER}/IMG_2026_07_{i:04d}.png"
        put_dataset_file(file_backend, f"{run}/{uri}", picture(i)[0])
        lines.append(json.dumps({"uri": uri, "label": i % 3}))
    manifest = put_dataset_file(file_backend, f"{run}/manifest.jsonl",
                                ("\n".join(lines) + "\n").encode())
    body = {"model": tiny_mobilenet, "dataset": {"manifest": manifest},
            "methods": ["gradient", "deconvnet"], "audit": {"sanity": {"sample": 4}}}
    job, report = run_job(requests.Session(), api_url, json=body)
    return MadeJob(api_url, None, job, report)


@pytest.fixture(scope="module")
def long_named_top_activations(api_url, tiny_model) -> MadeJob:
    """A `top_activations` job over uploads with long names, at a layer with a long name."""
    spec = {"kind": "top_activations", "model": tiny_model, "layer": "layer1.0.conv1",
            "channels": [0, 1], "k": 3}
    files = [("spec", (None, json.dumps(spec), "application/json"))]
    files += [("images", (f"a-photograph-with-a-rather-long-file-name-taken-on-holiday-{i}.png",
                          io.BytesIO(picture(300 + i)[0]))) for i in range(4)]
    job, report = run_job(requests.Session(), api_url, files=files)
    return MadeJob(api_url, None, job, report)


@pytest.fixture(scope="module")
def small_visualize(api_url, tiny_model) -> MadeJob:
    """A `visualize` job of two objectives, one at a layer with a long name, 120 steps."""
    body = {"kind": "visualize", "model": tiny_model, "size": 32, "steps": 120,
            "snapshot_every": 20, "objective": [{"class": 3},
                                                {"layer": "layer2.0.conv2", "channel": 5}],
            "regularizers": {"jitter": 1, "scale": None, "rotate": None}}
    job, report = run_job(requests.Session(), api_url, json=body)
    return MadeJob(api_url, None, job, report)
