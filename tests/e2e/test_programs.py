"""A real `torch.export` program through the whole service: registered as a `.pt2` (admin),
validated by the worker, then attributed with the plain gradient, guided backprop, DeconvNet
and Guided Grad-CAM. Every map is checked against Captum on the eager model that was
exported (its ReLUs are distinct modules, so Captum's module hooks see them all), and the
rectifier rules must have reached every ReLU of the program's graph."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import requests
import torch
from badinput.helpers import download, register_model
from torch import nn
from waiting import job_final, model_ready

from e2e.helpers import npy_bytes, submit

METHODS = ["gradient", "guided_backprop", "deconvnet", "guided_gradcam"]
CLASS = 3
SIDE = 32
SPEC = {"name": "exported-cnn", "num_classes": 10, "input_size": SIDE, "resize": SIDE}
CAPTUM_HOOK_WARNING = "Setting backward hooks on ReLU activations"


class Net(nn.Module):
    """Three convolutions, each followed by its own ReLU module, and a global average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3, self.relu3 = nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.head(self.relu3(self.conv3(x)))


@pytest.fixture(scope="module")
def eager() -> Net:
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def program(eager) -> bytes:
    """The eager model exported with a dynamic batch dimension and saved as a `.pt2`."""
    x = torch.zeros(2, 3, SIDE, SIDE)
    batch = {"x": {0: torch.export.Dim("batch")}}
    exported = torch.export.export(eager, (x,), dynamic_shapes=batch)
    buf = io.BytesIO()
    torch.export.save(exported, buf)
    return buf.getvalue()


def captum(method: str, model: nn.Module, x: torch.Tensor, layer: nn.Module) -> np.ndarray:
    from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, Saliency

    inputs = x.clone().requires_grad_(True)
    target = [CLASS] * len(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CAPTUM_HOOK_WARNING, category=UserWarning)
        if method == "gradient":
            out = Saliency(model).attribute(inputs, target=target, abs=False)
        elif method == "guided_gradcam":
            out = GuidedGradCam(model, layer).attribute(inputs, target=target,
                                                        interpolate_mode="bilinear")
        else:
            kind = GuidedBackprop if method == "guided_backprop" else Deconvolution
            out = kind(model).attribute(inputs, target=target)
    return out.detach().numpy()


def test_an_exported_program_registers_and_runs_every_rectifier_method(api_url, eager, program):
    session = requests.Session()  # the keyless default tenant, an admin on loopback
    response = register_model(session, api_url, SPEC, program, part="program")
    assert response.status_code in (201, 409), response.text
    record = model_ready(session, api_url, SPEC["name"])
    assert record["status"] == "ready", record
    assert record["format"] == "pt2"

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, SIDE, SIDE)).astype(np.float32)
    spec = {"model": SPEC["name"], "methods": METHODS, "target": {"class": CLASS},
            "outputs": ["npy"]}
    response = submit(session, api_url, spec, [(f"x{i}.npy", npy_bytes(x[i])) for i in range(2)])
    assert response.status_code == 202, response.text
    job = job_final(session, api_url, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job

    items = session.get(f"{api_url}/v1/jobs/{job['id']}/items", timeout=10).json()["items"]
    assert [item["status"] for item in items] == ["succeeded", "succeeded"]
    # The program's module tree names and types its modules as the eager model does, so
    # Guided Grad-CAM's default layer is the eager model's: its last ReLU.
    module = eager.relu3
    for position, method in enumerate(METHODS):
        expected = captum(method, eager, torch.from_numpy(x), module)
        for i, item in enumerate(items):
            output = item["outputs"][position]
            assert (output["method"], output["target"]) == (method, {"class": CLASS})
            got = np.load(io.BytesIO(download(session, api_url, output["npy"])))
            assert np.abs(expected[i]).max() > 0, (method, i)
            error = np.linalg.norm(got - expected[i]) / np.linalg.norm(expected[i])
            assert error <= 1e-4, (method, i, error)
            if method != "gradient":
                # Every ReLU call of the graph (three aten.relu) went through the rule.
                assert output["coverage"]["relu_calls"] == output["coverage"]["overridden"] == 3
                assert output["coverage"]["applied"] > 0
