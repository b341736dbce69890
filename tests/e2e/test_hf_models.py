"""A Hugging Face ViT through the whole service: saved with `save_pretrained`, zipped,
registered with a file part `bundle`, validated by the worker, then attributed with the plain
gradient and Integrated Gradients. Each map is checked against plain autograd and Captum on
the transformers model the test built; the classes and the preprocessing come from the
bundle, and a spec's own fields win over it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
import torch
from badinput.helpers import download
from hf_bundles import CLASSES, save, tarred, tiny_model, zipped
from waiting import job_final, model_ready

from e2e.helpers import npy_bytes, submit

CLASS = 2
STEPS = 8
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def register_bundle(session, url: str, spec: dict, data: bytes, filename: str = "vit.zip"):
    return session.post(f"{url}/v1/models", files={
        "spec": (None, json.dumps(spec), "application/json"),
        "bundle": (filename, io.BytesIO(data), "application/octet-stream")}, timeout=60)


@pytest.fixture(scope="module")
def vit():
    return tiny_model("vit", seed=3)


@pytest.fixture(scope="module")
def folder(vit, tmp_path_factory):
    """The ViT and its image processor (32 px, its own mean and std), saved as one folder."""
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=MEAN,
                                  image_std=STD)
    return save(vit, tmp_path_factory.mktemp("hf") / "vit", processor)


def reference(model, x: torch.Tensor, method: str) -> np.ndarray:
    """Plain autograd, or Captum's Integrated Gradients from the black picture (pixel 0,
    normalized: −mean/std), on the transformers model's logits."""
    from captum.attr import IntegratedGradients

    def logits(inputs):
        return model(pixel_values=inputs).logits

    inputs = x.clone().requires_grad_(True)
    if method == "gradient":
        (grad,) = torch.autograd.grad(logits(inputs)[:, CLASS].sum(), inputs)
        return grad.numpy()
    black = (-torch.tensor(MEAN) / torch.tensor(STD))[None, :, None, None].expand_as(x)
    maps = IntegratedGradients(logits).attribute(inputs, baselines=black.contiguous(),
                                                 target=CLASS, n_steps=STEPS,
                                                 method="gausslegendre")
    return maps.detach().numpy()


def test_a_zipped_vit_registers_and_its_maps_match_autograd_and_captum(api_url, vit, folder):
    session = requests.Session()
    spec = {"name": "hf-vit", "architecture": "transformers"}
    response = register_bundle(session, api_url, spec, zipped(folder))
    assert response.status_code in (201, 409), response.text
    record = model_ready(session, api_url, spec["name"])
    assert record["status"] == "ready", record
    assert (record["format"], record["architecture"]) == ("transformers", "transformers")
    assert record["num_classes"] == 3 and record["class_names"] == list(CLASSES)
    assert (record["input_size"], record["resize"]) == (32, 32)
    assert np.allclose(record["mean"], MEAN) and np.allclose(record["std"], STD)

    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    methods = ["gradient", {"name": "integrated_gradients", "steps": STEPS}]
    job_spec = {"model": spec["name"], "methods": methods, "target": {"class": CLASS},
                "outputs": ["npy"]}
    response = submit(session, api_url, job_spec,
                      [(f"x{i}.npy", npy_bytes(x[i])) for i in range(len(x))])
    assert response.status_code == 202, response.text
    job = job_final(session, api_url, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job

    items = session.get(f"{api_url}/v1/jobs/{job['id']}/items", timeout=10).json()["items"]
    assert len(items) == len(x)
    for position, method in enumerate(["gradient", "integrated_gradients"]):
        expected = reference(vit, torch.from_numpy(x), method)
        for i, item in enumerate(items):
            output = item["outputs"][position]
            assert (output["method"], output["target"]) == (method, {"class": CLASS})
            prediction = item["prediction"]
            assert prediction["label"] == CLASSES[prediction["class"]]  # id2label's names
            got = np.load(io.BytesIO(download(session, api_url, output["npy"])))
            error = np.linalg.norm(got - expected[i]) / np.linalg.norm(expected[i])
            assert error <= 1e-4, (method, i, error)


def test_a_tarred_bundle_registers_and_the_specs_own_fields_win(api_url, folder):
    session = requests.Session()
    spec = {"name": "hf-vit-own", "architecture": "transformers",
            "class_names": ["a", "b", "c"], "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}
    response = register_bundle(session, api_url, spec, tarred(folder), "vit.tar.gz")
    assert response.status_code in (201, 409), response.text
    record = model_ready(session, api_url, spec["name"])
    assert record["status"] == "ready", record
    assert record["class_names"] == ["a", "b", "c"] and record["num_classes"] == 3
    assert (record["mean"], record["std"]) == ([0.1, 0.2, 0.3], [1, 1, 1])
    assert (record["input_size"], record["resize"]) == (32, 32)  # from the bundle


def test_the_architectures_list_transformers_and_its_model_types(api_url):
    body = requests.get(f"{api_url}/v1/architectures", timeout=10).json()
    assert "transformers" in body["architectures"] and "resnet18" in body["architectures"]
    assert body["transformers_model_types"] == ["beit", "convnext", "deit", "efficientnet",
                                                "resnet", "swin", "vit"]
