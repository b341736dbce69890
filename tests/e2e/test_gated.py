"""The gated rules over HTTP: opt-in, echoed, warned about on every output, and refused by
default on a GELU model with the option named."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from PIL import Image
from stacks import register
from waiting import job_final

from e2e.helpers import all_items, download, image_bytes, submit

SPEC = {"name": "tiny-convnext", "architecture": "timm:test_convnext", "num_classes": 4,
        "input_size": 32, "resize": 32}
GATED = [{"name": "guided_backprop", "rule": "gated"}, {"name": "deconvnet", "rule": "gated"},
         {"name": "guided_gradcam", "rule": "gated"}]


@pytest.fixture(scope="module")
def convnext(api_url, tmp_path_factory):
    """A seeded timm ConvNeXt (GELU, tanh approximation) registered on `api_url`."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_convnext", num_classes=4).eval()
    path = tmp_path_factory.mktemp("weights") / "convnext.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    response = register(api_url, SPEC, path)
    assert response.status_code in (201, 409), response.text
    return model


def _engine_maps(model, inputs: list[bytes], methods: list):
    """The in-process engine's result on the same inputs (what the worker must reproduce)."""
    import torch

    from shared.spec.methods import parse_methods
    from shared.spec.model import parse_model_spec
    from worker.engine.core import Engine
    from worker.models.build import preprocess_image

    prep = parse_model_spec(SPEC).preprocessing
    x = torch.stack([preprocess_image(Image.open(io.BytesIO(data)).convert("RGB"), prep)
                     for data in inputs])
    return Engine(model).attribute(x, parse_methods(methods))


def test_gated_outputs_are_echoed_warned_and_equal_the_engine(api_url, convnext):
    session = requests.Session()
    inputs = [("a.png", image_bytes(11)), ("b.png", image_bytes(12))]
    spec = {"model": SPEC["name"], "methods": [*GATED, "gradient"], "outputs": ["npy"]}
    response = submit(session, api_url, spec, inputs)
    assert response.status_code == 202, response.text
    job = job_final(session, api_url, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["methods"] == [{**GATED[0], "render": "signed"}, {**GATED[1], "render": "signed"},
                              {**GATED[2], "layer": None, "render": "signed"},
                              {"name": "gradient", "render": "heatmap"}]

    expected = _engine_maps(convnext, [data for _, data in inputs], spec["methods"])
    items = all_items(session, api_url, job["id"])
    for item, want in zip(items, expected.images, strict=True):
        assert item["status"] == "succeeded", item
        outputs = item["outputs"]
        assert [o["method"] for o in outputs] == [m["name"] for m in GATED] + ["gradient"]
        for out, amap in zip(outputs, want.maps, strict=True):
            got = np.load(io.BytesIO(download(session, SimpleNamespace(url=api_url),
                                              out["npy"])))
            scale = float(np.abs(amap.values).max())
            np.testing.assert_allclose(got, amap.values, rtol=1e-4, atol=1e-5 * scale)
            coverage = out["coverage"]
            assert coverage["relu_calls"] == coverage["overridden"] > 0, out
        for out in outputs[:3]:
            assert out["params"]["rule"] == "gated"
            assert any(w.startswith(f"{out['method']}: ") and "generalisation" in w
                       and "not from the paper" in w for w in out["warnings"]), out
        assert not outputs[3].get("warnings")


def test_the_default_rule_fails_the_item_and_names_the_option(api_url, convnext):
    session = requests.Session()
    spec = {"model": SPEC["name"], "methods": ["guided_backprop"], "outputs": ["npy"]}
    response = submit(session, api_url, spec, [("a.png", image_bytes(13))])
    assert response.status_code == 202, response.text
    job = job_final(session, api_url, response.json()["id"])
    assert job["methods"] == [{"name": "guided_backprop", "rule": "relu", "render": "signed"}]
    (item,) = all_items(session, api_url, job["id"])
    assert item["status"] == "failed"
    assert '"rule": "gated"' in item["error"] and "GELU (tanh)" in item["error"]
