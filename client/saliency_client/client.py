"""The blocking SDK: `Client` talks to the API, `Job` follows one job."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from saliency_client import download as dl
from saliency_client import exports, protocol
from saliency_client import results as res
from saliency_client.datasets import MAX_BATCH_BYTES, Dataset, Uploaded, batches, named_files
from saliency_client.errors import ApiError
from saliency_client.kinds import TOP_ACTIVATIONS
from saliency_client.progress import UploadProgress, Waiter
from saliency_client.protocol import Batch
from saliency_client.transport import RetryPolicy, Transport
from saliency_client.types import Item, JobState, JobStatus, Layers, Method, Model, Progress, Roots


class Client:
    """A client of the v1 API; `base_url`/`api_key` default to SALIENCY_URL/SALIENCY_API_KEY."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.Client | None = None) -> None:
        self.transport = Transport(base_url, api_key, timeout, retry, http)

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, inputs: Any = None, *, model: str, methods: Any = None, target: Any = None,
               reduce: str | None = None, outputs: Any = None,
               dataset: Dataset | dict[str, Any] | None = None, seed: int | None = None,
               kind: str | None = None, idempotency_key: str | None = None,
               **fields: Any) -> Job:
        """Submit one job: `inputs` (image paths, image bytes, PIL images, C×H×W arrays, or
        storage URIs, plain or as `{"uri", "id", "label", "box", "mask"}`) or a `dataset`.

        `methods` are names, `"name:k=v,…"` strings or `{"name": …, **params}` objects;
        `fields` (`retention_s`, `notify`, `map_dtype`, `write`, `audit`, and the fields of
        other kinds) are passed through. The `Idempotency-Key` (a fresh uuid4 unless given)
        is reused by every retry, so a submit retried after a dropped connection never makes
        a second job.
        """
        return Job(self, self.transport.call(protocol.submit(
            inputs, model=model, methods=methods, target=target, reduce=reduce, outputs=outputs,
            dataset=dataset, seed=seed, kind=kind, idempotency_key=idempotency_key, **fields)))

    def upload(self, files: Any, *, prefix: str | None = None, root: str | Path | None = None,
               batch_size: int = 32, max_batch_bytes: int = MAX_BATCH_BYTES,
               progress: bool = False,
               on_batch: Callable[[list[str], str], None] | None = None) -> Uploaded:
        """Store files in the tenant's area for data-set jobs (`POST /v1/uploads`), in
        batches; answers the prefix to submit (`.dataset(labels=...)`) and every URI.

        `files` is a folder (its images, named by their path relative to it, so that class
        folders survive) or a list of paths (named relative to `root`, else by file name).
        `prefix` names the data set's folder in the tenant's area (the API's default is
        `default`, shared by every upload without one). Sending a file again overwrites it,
        so an interrupted upload is resumed by running it again; `on_batch(names, prefix)` is
        called once each batch is stored. A batch the API finds too large is split in two.
        """
        named = named_files(files, root)
        if not named:
            raise ValueError(f"no image files to upload in {files!r}")
        uploads = UploadProgress(len(named), progress, on_batch)
        try:
            for batch in batches(named, batch_size, max_batch_bytes):
                self._store(batch, prefix, uploads)
        finally:
            uploads.close()
        return uploads.result

    def _store(self, batch: Batch, prefix: str | None, uploads: UploadProgress) -> None:
        try:
            answer = self.transport.call(protocol.upload(batch, prefix))
        except ApiError as exc:
            halves = protocol.halves(batch, exc)
            if halves is None:
                raise
            for half in halves:
                self._store(half, prefix, uploads)
            return
        uploads.stored(batch, answer)

    def roots(self) -> Roots:
        """Where this tenant's data-set jobs may read (its own area and data-set roots)."""
        return self.transport.call(protocol.roots())

    def webhook_secret(self) -> str:
        """The tenant's webhook signing secret (`whsec_…`), for `webhooks.verify`."""
        return self.transport.call(protocol.webhook_secret())

    def page_url(self, job_id: str) -> str:
        """The job's page in the browser."""
        return protocol.page_url(self.base_url, job_id)

    def report_url(self, job_id: str) -> str:
        """The page of the job's report (an attribution job's audit) in the browser."""
        return protocol.report_url(self.base_url, job_id)

    def job(self, job_id: str) -> Job:
        """A handle on an existing job (nothing is fetched until asked)."""
        return Job(self, job_id)

    def register_model(self, name: str, *, num_classes: int | None = None,
                       weights: str | Path | None = None, program: str | Path | None = None,
                       bundle: str | Path | None = None, architecture: str | None = None,
                       **preprocessing: Any) -> Model:
        """Register safetensors `weights` for a torchvision or timm `architecture`, a `.pt2`
        `program`, or a Hugging Face `bundle` (a save_pretrained folder as .zip or .tar.gz,
        whose classes and preprocessing are used unless given); `preprocessing` takes
        input_size, resize, mean, std, class_names."""
        return self.transport.call(protocol.register_model(
            name, num_classes=num_classes, weights=weights, program=program, bundle=bundle,
            architecture=architecture, **preprocessing))

    def models(self) -> list[Model]:
        return self.transport.call(protocol.models())

    def model(self, name: str) -> Model:
        return self.transport.call(protocol.model(name))

    def layers(self, model: str) -> Layers:
        """Every module of `model` with its output shape and layout, as its first load
        recorded them (`ApiError` 409 `not_ready` while it is being validated)."""
        return self.transport.call(protocol.layers(model))

    def methods(self) -> list[Method]:
        return self.transport.call(protocol.methods())


class Job:
    """One job: `refresh`, `wait`, `items`, `results`, `report`, `download`, `cancel`."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id
        self.state: JobState | None = None

    def __repr__(self) -> str:
        status = self.state.status.value if self.state else "?"
        return f"<Job {self.id} {status}>"

    @property
    def status(self) -> JobStatus:
        return (self.state or self.refresh().state).status

    @property
    def progress(self) -> Progress:
        return (self.state or self.refresh().state).progress

    def refresh(self) -> Job:
        self.state = self.client.transport.call(protocol.job(self.id))
        return self

    def wait(self, timeout: float | None = None, progress: bool = True,
             check: bool = False) -> Job:
        """Poll until the job finishes, showing a progress bar of done/total on stderr.

        Raises WaitTimeout after `timeout` seconds; with `check`, JobFailed unless it succeeded.
        """
        waiter = Waiter(self.id, timeout, progress)
        try:
            while not waiter.update(self.refresh().state):
                time.sleep(waiter.next_sleep())
        finally:
            waiter.close()
        if check:
            self.state.raise_for_status()
        return self

    def items(self, page_size: int = 100) -> Iterator[Item]:
        """Every item of the job, fetching page after page by `next_cursor`."""
        cursor = None
        while True:
            page, cursor = self.client.transport.call(protocol.items(self.id, page_size, cursor))
            yield from page
            if not cursor:
                return

    def results(self) -> list[dict[str, Any]]:
        """The results file as rows (one per item × output; a failed item has one row with
        `method` None); the job must be final (else ApiError `not_ready`, 409)."""
        return self.client.transport.call(protocol.result_rows(self.id))

    def results_frame(self) -> Any:
        """The results file as a pandas DataFrame (needs pandas and pyarrow)."""
        return self.client.transport.call(protocol.result_frame(self.id))

    def save_results(self, path: str | Path, format: str | None = None) -> Path:
        """Stream the results file into `path`; the format is `format`, else the extension."""
        path = Path(path)
        fmt = res.format_of(path, format)
        self.client.transport.send(protocol.results(self.id, fmt), sink=path)
        return path

    def report(self) -> dict[str, Any]:
        """The job's report (`{"kind": ..., ...}`; an attribution job's audit figures)."""
        return self.client.transport.call(protocol.report(self.id))

    def save_report(self, path: str | Path) -> Path:
        path = Path(path)
        self.client.transport.send(protocol.report(self.id).request, sink=path)
        return path

    def download(self, directory: str | Path, workers: int = 8) -> Path:
        """Write every artifact under its predictable name (`download` module), and a
        finished job's `results.parquet` and `report.json`, then `results.jsonl`: written
        last, its presence means the download is complete.

        A top_activations job's results are its report: once the job is final, each
        channel's grid and its units' projections and patches, `results.parquet`, then
        `report.json`, written last (no `results.jsonl`: its items have no outputs).
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        transport = self.client.transport

        def fetch(url: str, name: str) -> None:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            transport.send(protocol.file(url), sink=out / name)

        with ThreadPoolExecutor(workers) as pool:
            if self.refresh().state.kind == TOP_ACTIVATIONS:
                report = self.report()  # ApiError not_ready before the job is final
                for future in [pool.submit(fetch, url, name)
                               for url, name in dl.report_files(report)]:
                    future.result()
                self.save_results(out / res.RESULTS_FILE)
                dl.write_json(out / res.REPORT_FILE, report)
                return out
            self._download_items(out, pool, fetch, workers)
        return out

    def _download_items(self, out: Path, pool: ThreadPoolExecutor,
                        fetch: Callable[[str, str], None], workers: int) -> None:
        job = self.state.raw
        tmp = out / (dl.RESULTS + ".part")
        with tmp.open("w") as results:
            pending: list[tuple[Item, Any, list[Any]]] = []

            def flush() -> None:
                for item, plan, futures in pending:
                    for future in futures:
                        future.result()
                    results.write(json.dumps(dl.result_line(item, plan)) + "\n")
                pending.clear()

            for item in self.items():
                plan = dl.output_files(item, job)
                futures = [pool.submit(fetch, url, name) for url, name in dl.fetches(plan)]
                pending.append((item, plan, futures))
                if len(pending) >= 4 * workers:
                    flush()
            flush()
        if self.refresh().state.status.finished:
            self.save_results(out / res.RESULTS_FILE)
            self.save_report(out / res.REPORT_FILE)
        tmp.replace(out / dl.RESULTS)

    def export(self, directory: str | Path, format: str = "fiftyone",
               images: bool = True) -> Path:
        """Unpack the job's export into `directory` (`exports` module); the job must be
        final (else ApiError `not_ready`, 409). `images=False` references inputs under
        `file://` URIs by their path instead of copying them (others are copied)."""
        out = Path(directory)
        archive = exports.archive_path(out, self.id)
        try:
            self.client.transport.send(protocol.export(self.id, format, images), sink=archive)
            return exports.unpack(archive, out)
        finally:
            archive.unlink(missing_ok=True)

    def cancel(self) -> Job:
        """Ask the job to stop: it answers `running` with `progress.finalizing` while its
        results file and report are written, then turns `cancelled` (`wait()` for it)."""
        self.state = self.client.transport.call(protocol.cancel(self.id))
        return self
