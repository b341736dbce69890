"""`saliency top-activations`: what a layer's channels detect, over a data set.

The Zeiler–Fergus figure: per channel, the k images that excite it most, each with the
projection of that one activation and the image patch it sees. The projection is DeconvNet
where a max-pooling precedes the layer and guided backprop where none does, unless `--method`
says; the command prints which and why, and each channel's warnings. DATA is:

- a local folder: its images, read in place when `GET /v1/roots` says the service can reach
  it, else uploaded (`POST /v1/uploads`, resumable) as `saliency audit` does;
- a storage URI of a JSON-lines manifest (`….jsonl`), or of a folder (a prefix);
- storage URIs of images, or local image files (sent with the job).

One job is submitted (for a folder, once: the state in `--out/.top-activations-state.json`
finds the same job again, as `saliency audit` does), followed with a bar of the scan and
then of the projections, and its report downloaded into `--out` (names in `download`): per
channel its grid `channel-0003.png` and its units' files in `channel-0003/`, then
`results.parquet`, then `report.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saliency_client import audit
from saliency_client import results as res
from saliency_client.client import Client, Job
from saliency_client.datasets import Dataset, is_image
from saliency_client.download import channel_stem
from saliency_client.kinds import top_activations_fields
from saliency_client.spec import is_uri

STEM = ".top-activations"


@dataclass(frozen=True)
class Source:
    """What the job reads (a data set, or inputs), and for a local folder its state."""

    dataset: Dataset | None = None
    inputs: list[str] | None = None
    state: audit.AuditState | None = None
    uploaded: int = 0
    in_place: bool = False


@dataclass(frozen=True)
class Outcome:
    """The job, its downloaded report, and how its inputs got to the service."""

    job: Job
    report: Path
    uploaded: int
    in_place: bool


def source(client: Client, data: Sequence[str], out: Path, batch_size: int = 32,
           progress: bool = True, force_upload: bool = False) -> Source:
    """How the job reads DATA (see the module's docstring)."""
    data = [str(d) for d in data]
    if not data:
        raise ValueError("no DATA: give a folder, a manifest or prefix URI, or images")
    uris = [d for d in data if is_uri(d)]
    if uris and len(uris) != len(data):
        raise ValueError("DATA is storage URIs or local files, not both")
    if not uris:
        folders = [d for d in data if Path(d).is_dir()]
        if folders and len(data) > 1:
            raise ValueError(f"{folders[0]}: a folder comes alone (one data set per job)")
        if folders:
            prefix, uploaded, in_place, state = audit.place(
                client, Path(folders[0]).resolve(), out, batch_size, progress, force_upload,
                STEM)
            return Source(Dataset(prefix=prefix), None, state, uploaded, in_place)
        return Source(inputs=data)
    if len(uris) == 1 and not is_image(uris[0]):
        uri = uris[0]
        if uri.lower().endswith(".jsonl"):
            return Source(Dataset(manifest=uri))
        return Source(Dataset(prefix=uri if uri.endswith("/") else uri + "/"))
    return Source(inputs=uris)


def run(client: Client, data: Sequence[str], out: str | Path, *, model: str, layer: str,
        channels: Any, k: int | None = None, methods: Any = None, batch_size: int = 32,
        timeout: float | None = None, progress: bool = True,
        force_upload: bool = False) -> Outcome:
    """Run the job (see the module's docstring); its final state is on `job.state`, and a
    job that ended failed or cancelled still has what its report holds downloaded."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = source(client, data, out, batch_size, progress, force_upload)
    spec = {"model": model, "methods": methods, **top_activations_fields(layer, channels, k)}
    if src.state is not None:
        job = audit.submit_once(client, src.state, {**spec, "dataset": src.dataset.to_json()})
    else:
        job = client.submit(src.inputs, dataset=src.dataset, **spec)
    job.wait(timeout=timeout, progress=progress)
    job.download(out)
    return Outcome(job, out / res.REPORT_FILE, src.uploaded, src.in_place)


def method_line(report: dict[str, Any]) -> str:
    """Which projection methods the report used, and why when the service chose them."""
    methods = ", ".join(report.get("methods") or ())
    reason = report.get("methods_reason")
    return f"projection: {reason}" if reason else f"projection: {methods} (as asked)"


def warning_lines(report: dict[str, Any]) -> list[str]:
    """Each channel's warnings (projections that barely depend on their images)."""
    return [f"warning: channel {channel['channel']}: {warning}"
            for channel in report.get("channels") or () for warning in channel.get("warnings")
            or ()]


def channel_lines(report: dict[str, Any], out: Path) -> list[str]:
    """One line per channel: its strongest activation, where, and its grid's file."""
    lines = []
    for channel in report.get("channels") or ():
        top = channel.get("top") or []
        best = (f"max {top[0]['activation']:.4g} in {top[0].get('id') or top[0].get('input')}"
                if top else "no images")
        lines.append(f"channel {channel['channel']:4d}  {best}  "
                     f"{out / (channel_stem(int(channel['channel'])) + '.png')}")
    return lines
