"""`saliency audit`: audit a local ImageFolder tree with one data-set job (or, with
`run_dataset`, a data set the service reads where it is: WebDataset shards, a Hugging Face
data set, a prefix or a manifest).

1. List the folder's images (`class/name.jpg`, hidden files left out), and work out the
   label each will get (`saliency_client.labels`): folders the model has no class for are
   refused here, before anything is uploaded or submitted.
2. If the service can read the folder in place — its `file://` URI is under one of the
   places `GET /v1/roots` names — use it and upload nothing. Otherwise upload the images
   (`POST /v1/uploads`, in batches) under a prefix named by the folder and a digest of its
   listing, so an unchanged folder always goes to the same place.
3. Submit one prefix job, wait, and save `results.parquet` and `report.json` into `--out`.

What is done is kept in `--out/.audit-state.json` (and the names uploaded so far in
`--out/.audit-uploaded`): running the same audit again resumes. It skips the batches already
stored, and follows the job already submitted rather than starting another; the submit's
`Idempotency-Key` is saved before it is sent, so even a submit whose answer was lost is
found again.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from saliency_client import labels as lab
from saliency_client import results as res
from saliency_client.client import Client, Job
from saliency_client.datasets import Annotations, Dataset, image_files, listing_digest
from saliency_client.errors import ApiError

STEM = ".audit"  # the state files: .audit-state.json and .audit-uploaded
GONE = (404, 410)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


class AuditState:
    """The progress of one audit of one folder on one service, kept in the output folder
    as `{stem}-state.json` and `{stem}-uploaded` (other commands that upload a folder and
    follow one job keep theirs under another stem)."""

    def __init__(self, out: Path, identity: dict[str, str], stem: str = STEM) -> None:
        self.path, self.names_path = out / f"{stem}-state.json", out / f"{stem}-uploaded"
        self.data: dict[str, Any] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except ValueError:
                data = {}
            if all(data.get(k) == v for k, v in identity.items()):
                self.data = data
        if not self.data:  # another folder, service or listing: start afresh
            self.data = dict(identity)
            self.names_path.unlink(missing_ok=True)
            self.save()

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".part")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def uploaded(self) -> set[str]:
        if not self.names_path.exists():
            return set()
        return set(self.names_path.read_text(encoding="utf-8").splitlines())

    def record_batch(self, names: list[str], prefix: str) -> None:
        if self.data.get("prefix") != prefix:
            self.data["prefix"] = prefix
            self.save()
        with self.names_path.open("a", encoding="utf-8") as f:
            f.write("".join(name + "\n" for name in names))


@dataclass(frozen=True)
class Outcome:
    """What an audit made: the job, where its files went, and how its inputs got there."""

    job: Job
    results: Path
    report: Path
    uploaded: int
    in_place: bool


def _upload_name(folder: Path, digest: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-.")[:40] or "data"
    return f"{slug}-{digest[:12]}"


def _readable_root(client: Client, uri: str) -> str | None:
    try:
        return client.roots().covering(uri)
    except ApiError as exc:
        if exc.status != 404:  # a service without /v1/roots reads nothing in place
            raise
        return None


def listing(folder: Path) -> list[tuple[str, Path]]:
    """The folder's images (`image_files`); ValueError when it has none."""
    files = image_files(folder)
    if not files:
        raise ValueError(f"{folder}: no images (.jpg, .jpeg, .png, .webp, .npy) found")
    return files


def place(client: Client, folder: Path, out: Path, batch_size: int, progress: bool,
          force_upload: bool, stem: str = STEM, files: list[tuple[str, Path]] | None = None
          ) -> tuple[str, int, bool, AuditState]:
    """The prefix URI the job reads, the files uploaded now, whether read in place, state.
    `files` is the folder's `listing`, when the caller has it already."""
    files = listing(folder) if files is None else files
    digest = listing_digest(files)
    state = AuditState(out, {"url": client.base_url, "folder": str(folder), "listing": digest},
                       stem)
    uri = folder.as_uri()
    root = None if force_upload else _readable_root(client, uri)
    if root is not None:
        _say(f"the service reads {uri} in place (under {root}): nothing to upload")
        return uri + "/", 0, True, state
    done = state.uploaded()
    pending = [path for name, path in files if name not in done]
    _say(f"uploading {len(pending)} of {len(files)} images"
         + (f" ({len(files) - len(pending)} already uploaded)" if done else ""))
    if pending:
        client.upload(pending, root=folder, prefix=_upload_name(folder, digest),
                      batch_size=batch_size, progress=progress, on_batch=state.record_batch)
    return state.data["prefix"], len(pending), False, state


def _spec_digest(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def submit_once(client: Client, state: AuditState, spec: dict[str, Any]) -> Job:
    """The audit's job: the one already submitted for this spec if it still exists, else a
    new one, under an Idempotency-Key saved before it is sent."""
    digest = _spec_digest(spec)
    if state.data.get("spec") == digest and state.data.get("job"):
        job = client.job(state.data["job"])
        try:
            job.refresh()
            _say(f"following job {job.id}, submitted before")
            return job
        except ApiError as exc:
            if exc.status not in GONE:
                raise
    if state.data.get("spec") != digest or not state.data.get("key") or state.data.get("job"):
        state.data.update(spec=digest, key=str(uuid.uuid4()), job=None)
        state.save()
    job = client.submit(**spec, idempotency_key=state.data["key"])
    state.data["job"] = job.id
    state.save()
    return job


def _labels(client: Client, files: list[tuple[str, Path]], model: str, labels: str | None,
            label_map: dict[str, str] | None, target: Any) -> dict[str, int] | None:
    """The data set's `label_map` (class indices), once the model is known to have a class
    for every folder; says on stderr which class each folder becomes."""
    if target == "label" and labels is None:
        raise ValueError('--target label needs labels: pass --labels folder-sorted (or folder, '
                         "or --label-map)")
    info = client.model(model)  # an unknown model is refused before anything is uploaded
    resolved = lab.resolve_label_map(label_map, info) if label_map else None
    classes = lab.folder_classes([name for name, _ in files], labels, resolved, info)
    if classes:
        names = info.class_names or ()
        shown = [f"{folder} -> {i}" + (f" ({names[i]})" if i < len(names) else "")
                 for folder, i in list(classes.items())[:lab.SHOWN]]
        more = len(classes) - len(shown)
        _say(f"labels ({labels}): " + ", ".join(shown) + (f" and {more} more" if more else ""))
    return resolved


def _job_spec(model: str, methods: Any, target: Any, seed: int | None, sanity: int | None,
              dataset: Dataset) -> dict[str, Any]:
    spec = {"model": model, "methods": methods, "target": target, "seed": seed,
            "dataset": dataset.to_json()}
    if sanity is not None:
        spec["audit"] = {"sanity": {"sample": sanity}}
    return spec


def _follow(client: Client, state: AuditState, spec: dict[str, Any], out: Path,
            timeout: float | None, progress: bool, uploaded: int, in_place: bool) -> Outcome:
    """Submit (once), wait, and save the results and the report into `out`."""
    job = submit_once(client, state, spec)
    job.wait(timeout=timeout, progress=progress)
    results = job.save_results(out / res.RESULTS_FILE)
    report = job.save_report(out / res.REPORT_FILE)
    return Outcome(job, results, report, uploaded, in_place)


def annotation_uri(client: Client, where: str, option: str) -> str:
    """An annotations file's or prefix's URI: as given (`s3://`, `file://`), or a local
    path's `file://` URI when the service reads it in place. Annotations are never
    uploaded (uploads take images only): ValueError when the service cannot read them."""
    if "://" in where:
        return where
    path = Path(where).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{option} {where}: no such file or folder")
    uri = path.as_uri() + ("/" if path.is_dir() else "")
    if _readable_root(client, uri) is None:
        raise ValueError(f"{option} {where}: the service cannot read it in place, and "
                         "annotations are not uploaded; put it under a place `GET /v1/roots` "
                         "names, or give the s3:// URI of a copy the service reads")
    return uri


def run(client: Client, folder: str | Path, out: str | Path, *, model: str,
        methods: Any = None, labels: str | None = None,
        label_map: dict[str, str] | None = None, target: Any = None,
        seed: int | None = None, sanity: int | None = None, batch_size: int = 32,
        timeout: float | None = None, progress: bool = True,
        force_upload: bool = False, annotations: Annotations | None = None) -> Outcome:
    """Audit `folder` (see the module's docstring); the job's final state is on `job.state`.

    `label_map` maps folder names to classes (an index or a class name; it implies
    `labels="folder"`); `sanity` asks for the sanity check on that many items;
    `annotations` give the images' objects (their `category_map`'s classes are checked
    against the model's, and resolved to indices, before anything is uploaded).
    """
    folder, out = Path(folder).resolve(), Path(out)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    if label_map and labels is None:
        labels = lab.FOLDER
    files = listing(folder)
    resolved = _labels(client, files, model, labels, label_map, target)
    if annotations is not None and annotations.category_map:
        annotations = replace(annotations, category_map=lab.resolve_label_map(
            {k: str(v) for k, v in annotations.category_map.items()}, client.model(model),
            "--category-map"))
    out.mkdir(parents=True, exist_ok=True)
    prefix, uploaded, in_place, state = place(client, folder, out, batch_size, progress,
                                              force_upload, files=files)
    dataset = Dataset(prefix=prefix, labels=labels, label_map=resolved,
                      annotations=annotations)
    spec = _job_spec(model, methods, target, seed, sanity, dataset)
    return _follow(client, state, spec, out, timeout, progress, uploaded, in_place)


def run_dataset(client: Client, dataset: Dataset, out: str | Path, *, model: str,
                methods: Any = None, label_map: dict[str, str] | None = None,
                target: Any = None, seed: int | None = None, sanity: int | None = None,
                timeout: float | None = None, progress: bool = True) -> Outcome:
    """Audit a data set the service reads in place (`Dataset(webdataset=...)`,
    `Dataset(huggingface=...)`, ...): nothing is uploaded; the same audit run again follows
    the job it submitted. `label_map` maps label names to classes (indices or class names of
    the model)."""
    out = Path(out)
    if label_map:
        dataset = replace(dataset, label_map=lab.resolve_label_map(label_map,
                                                                   client.model(model)))
    out.mkdir(parents=True, exist_ok=True)
    identity = {"url": client.base_url, "dataset": json.dumps(dataset.to_json(),
                                                              sort_keys=True)}
    state = AuditState(out, identity)
    spec = _job_spec(model, methods, target, seed, sanity, dataset)
    return _follow(client, state, spec, out, timeout, progress, 0, True)
