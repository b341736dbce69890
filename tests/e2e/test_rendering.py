"""Each method's `png` as its paper draws it, on the real stack: the default `render` echoed
at submission and on every output, `"render": "heatmap"` giving v1's bytes, and colour bars
that carry the values of the pictures — drawn by the worker for uploads, by the API for maps
cut from a data-set job's shards."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from waiting import job_final

from e2e.helpers import all_items, download, image_bytes, submit
from shared.media.colormap import INFERNO
from shared.media.render import encode_png

PAPERS = {"gradient": "heatmap", "guided_backprop": "signed", "deconvnet": "signed",
          "smoothgrad": "heatmap", "integrated_gradients": "heatmap", "gradcam": "cam",
          "guided_gradcam": "signed", "occlusion": "heatmap"}


def v1_png(values: np.ndarray) -> bytes:
    """v1's `png`, as the renderer drew it before `render` existed (a copy of its formula)."""
    map2d = np.abs(values).max(axis=0)
    top = float(np.percentile(map2d, 99.5))
    if top <= 0:
        top = float(map2d.max())
    unit = np.zeros_like(map2d) if top <= 0 else np.clip(map2d / top, 0.0, 1.0)
    return encode_png(np.rint(unit * 255).astype(np.uint8), palette=INFERNO)


def signed_picture(values: np.ndarray) -> np.ndarray:
    scale = np.percentile(np.abs(values), 99.5)
    unit = np.clip(0.5 + values / (2 * scale), 0, 1)
    return np.rint(unit * 255).astype(np.uint8).transpose(1, 2, 0)


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"))


def check_output(session, stack, out: dict, render: str) -> None:
    """The output's png is drawn as `render` says, and its colour bars carry its values."""
    assert out["params"]["render"] == render, out["method"]
    values = np.load(io.BytesIO(download(session, stack, out["npy"])))
    png = download(session, stack, out["png"])
    bars = out["colorbars"]
    assert set(bars) == {"png", "overlay"}
    heat_top = np.percentile(np.abs(values).max(axis=0), 99.5)
    if render == "heatmap":
        assert png == v1_png(values), out["method"]
        assert bars["png"] == bars["overlay"]
        assert bars["png"]["colormap"] == "inferno" and bars["png"]["low"] == 0
        assert bars["png"]["high"] == pytest.approx(heat_top, rel=1e-3)
    elif render == "signed":
        assert np.abs(decode(png).astype(int) - signed_picture(values)).max() <= 1
        scale = np.percentile(np.abs(values), 99.5)
        assert bars["png"]["colormap"] == "signed"
        assert (bars["png"]["low"], bars["png"]["high"]) == pytest.approx((-scale, scale),
                                                                          rel=1e-3)
        assert bars["overlay"]["high"] == pytest.approx(heat_top, rel=1e-3)
    else:  # the smoothed CAM over the photo: its top is the smoothed map's maximum
        assert decode(png).shape == (32, 32, 3)
        assert bars["png"]["colormap"] == "inferno" and bars["png"] == bars["overlay"]
        assert 0.5 * values.max() < bars["png"]["high"] <= values.max() * (1 + 1e-3)


def test_each_methods_default_rendering_is_echoed_and_drawn(stack, stack_model, alice):
    methods = [*PAPERS, {"name": "guided_backprop", "render": "heatmap"},
               {"name": "gradcam", "render": "heatmap"}]
    spec = {"model": stack_model.name, "methods": methods}
    response = submit(alice, stack.url, spec, [("a.png", image_bytes(31))])
    assert response.status_code == 202, response.text
    submitted = alice.get(f"{stack.url}/v1/jobs/{response.json()['id']}", timeout=10).json()
    renders = [*PAPERS.items(), ("guided_backprop", "heatmap"), ("gradcam", "heatmap")]
    assert [(m["name"], m["render"]) for m in submitted["methods"]] == renders
    assert submitted["overlay_opacity"] == 1.0
    job = job_final(alice, stack.url, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    assert [(m["name"], m["render"]) for m in job["methods"]] == renders
    (item,) = all_items(alice, stack.url, job["id"])
    assert [o["method"] for o in item["outputs"]] == [name for name, _ in renders]
    for out, (_, render) in zip(item["outputs"], renders, strict=True):
        check_output(alice, stack, out, render)


def test_maps_cut_from_shards_are_drawn_by_the_same_rules(stack, stack_model, alice):
    """A data-set job's pictures come from the API, on demand: the same renderings, from the
    output's recorded `render` and the job's `overlay_opacity`."""
    files = [("files", (f"render/{i}.png", io.BytesIO(image_bytes(40 + i)))) for i in range(2)]
    uploaded = alice.post(f"{stack.url}/v1/uploads", files=files, timeout=60)
    assert uploaded.status_code in (200, 201), uploaded.text
    methods = ["guided_backprop", "gradcam", {"name": "gradient", "render": "heatmap"}]
    spec = {"model": stack_model.name, "methods": methods, "overlay_opacity": 0.6,
            "map_dtype": "float32", "dataset": {"prefix": uploaded.json()["prefix"]}}
    response = alice.post(f"{stack.url}/v1/jobs", data=json.dumps(spec), timeout=60,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    job = job_final(alice, stack.url, response.json()["id"], timeout=180)
    assert job["status"] == "succeeded" and job["overlay_opacity"] == 0.6, job
    items = all_items(alice, stack.url, job["id"])
    assert len(items) == 2
    for item in items:
        for out, render in zip(item["outputs"], ["signed", "cam", "heatmap"], strict=True):
            assert "/maps/" in out["png"]
            check_output(alice, stack, out, render)
