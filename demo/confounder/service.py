"""The planted-confounder demo through the service: `python -m demo.confounder submit DIR`.

With the data set and model that `python -m demo.confounder make DIR` wrote, against a
running service (`make run`; `--url`, default `$SALIENCY_URL` or http://127.0.0.1:8000):

1. register the model (`DIR/model.json` and `DIR/model.safetensors`) under a name that ends
   in a digest of its weights, so that running the demo again finds it registered;
2. upload the test pictures (`POST /v1/uploads`, under a prefix named by the same digest);
3. submit them as one attribution job whose inline inputs carry each picture's `id`,
   `label` and `box`;
4. wait, read the report (`GET /v1/jobs/{id}/report`) and the results file (each item's
   `energy_in_box` and its centre-Gaussian baseline's), and measure the three figures
   (`demo.confounder.figures`) as the in-process audit does.

Needs the SDK (`saliency_client`), not torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saliency_client import ApiError, Client, Job

from demo.confounder.figures import Figures, from_results

METHODS = ("gradient", "guided_backprop")  # as the in-process audit: gradient's figures
PREPROCESSING = ("input_size", "resize", "mean", "std", "class_names")
CONFLICT = 409


@dataclass(frozen=True)
class ServiceAudit:
    """The demo's job, its report as the API serves it, its figures and the report page."""

    job: Job
    report: dict[str, Any]
    figures: Figures
    page: str


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def register(client: Client, directory: Path) -> str:
    """Register the demo's model (or find it registered); answers its name."""
    spec = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    weights = directory / "model.safetensors"
    name = f"{spec['name']}-{_digest(weights)}"
    try:
        client.register_model(name, num_classes=spec["num_classes"], weights=weights,
                              architecture=spec["architecture"],
                              **{k: spec[k] for k in PREPROCESSING if k in spec})
    except ApiError as exc:
        if exc.status != CONFLICT:  # the same name holds the same weights: already there
            raise
    return name


def upload_inputs(client: Client, directory: Path, prefix: str,
                  progress: bool = True) -> list[dict[str, Any]]:
    """Upload the test pictures; answers the job's inline inputs (uri, id, label, box)."""
    lines = [json.loads(line) for line in
             (directory / "test.jsonl").read_text(encoding="utf-8").splitlines() if line]
    uploaded = client.upload([directory / line["uri"] for line in lines], root=directory,
                             prefix=prefix, progress=progress)
    stored = set(uploaded.uris)
    inputs = []
    for line in lines:
        uri = uploaded.prefix + line["uri"]
        if uri not in stored:
            raise RuntimeError(f"the upload did not store {line['uri']} (got {uri})")
        inputs.append({**line, "uri": uri})
    return inputs


def run(client: Client, directory: str | Path, *, methods: Sequence[str] = METHODS,
        seed: int = 0, outputs: Sequence[str] | None = None, timeout: float | None = None,
        progress: bool = True) -> ServiceAudit:
    """Register, upload, submit, wait and measure (see the module's docstring). `outputs`
    are the per-item files the job writes (default the service's: npy, png, overlay); the
    metrics, and the report with its pictures, do not depend on them."""
    directory = Path(directory)
    model = register(client, directory)
    inputs = upload_inputs(client, directory, f"{model}-test", progress)
    job = client.submit(inputs, model=model, methods=list(methods), seed=seed,
                        outputs=None if outputs is None else list(outputs))
    job.wait(timeout=timeout, progress=progress, check=True)
    report = job.report()
    figures = from_results(report, job.results())
    return ServiceAudit(job, report, figures, f"{client.page_url(job.id)}/report")
