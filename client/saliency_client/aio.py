"""The asyncio twin of the SDK, for services that follow many jobs at once.

    async with AsyncClient() as client:
        jobs = [await client.submit(batch, model="resnet18") for batch in batches]
        await asyncio.gather(*(job.wait() for job in jobs))
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from saliency_client import download as dl
from saliency_client import exports
from saliency_client import results as res
from saliency_client.datasets import (
    MAX_BATCH_BYTES,
    TOO_LARGE,
    Dataset,
    Uploaded,
    batches,
    named_files,
    upload_parts,
)
from saliency_client.errors import ApiError
from saliency_client.kinds import TOP_ACTIVATIONS
from saliency_client.progress import Waiter, upload_bar
from saliency_client.spec import build_submit, job_spec
from saliency_client.transport import AsyncTransport, RetryPolicy
from saliency_client.types import (
    Item,
    JobState,
    JobStatus,
    Layers,
    Method,
    Model,
    Roots,
    parse_methods,
    unwrap_list,
)
from saliency_client.uploads import model_registration

Batch = list[tuple[str, Path]]


class AsyncClient:
    """Same methods as `Client`, as coroutines; one connection pool for every job."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.transport = AsyncTransport(base_url, api_key, timeout, retry, http)

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(self, inputs: Any = None, *, model: str, methods: Any = None,
                     target: Any = None, reduce: str | None = None, outputs: Any = None,
                     dataset: Dataset | dict[str, Any] | None = None, seed: int | None = None,
                     kind: str | None = None, idempotency_key: str | None = None,
                     **fields: Any) -> AsyncJob:
        """See `Client.submit`; the Idempotency-Key is reused across retries."""
        spec = job_spec(model, methods, target, reduce, outputs, seed=seed, kind=kind, **fields)
        body, data, files = build_submit(inputs, spec, dataset)
        key = idempotency_key or str(uuid.uuid4())
        answer = await self.transport.json("POST", "/v1/jobs", json=body, data=data, files=files,
                                           headers={"Idempotency-Key": key}, idempotent=True)
        return AsyncJob(self, answer["id"])

    async def upload(self, files: Any, *, prefix: str | None = None,
                     root: str | Path | None = None, batch_size: int = 32,
                     max_batch_bytes: int = MAX_BATCH_BYTES, progress: bool = False,
                     on_batch: Callable[[list[str], str], None] | None = None) -> Uploaded:
        """See `Client.upload`: batches are sent one after another."""
        named = named_files(files, root)
        if not named:
            raise ValueError(f"no image files to upload in {files!r}")
        result = Uploaded(prefix="")
        with upload_bar(len(named), progress) as bar:

            def stored(batch: Batch, answer: dict[str, Any]) -> None:
                result.uris.extend(answer["uris"])
                result.prefix = answer["prefix"]
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch([name for name, _ in batch], answer["prefix"])

            for batch in batches(named, batch_size, max_batch_bytes):
                await self._store(batch, prefix, stored)
        return result

    async def _store(self, batch: Batch, prefix: str | None,
                     stored: Callable[[Batch, dict[str, Any]], None]) -> None:
        data, parts = upload_parts(batch, prefix)
        try:
            answer = await self.transport.json("POST", "/v1/uploads", data=data, files=parts,
                                               idempotent=True)
        except ApiError as exc:
            if exc.status != TOO_LARGE or len(batch) == 1:
                raise
            half = len(batch) // 2
            await self._store(batch[:half], prefix, stored)
            await self._store(batch[half:], prefix, stored)
            return
        stored(batch, answer)

    async def roots(self) -> Roots:
        return Roots.from_json(await self.transport.json("GET", "/v1/roots"))

    async def webhook_secret(self) -> str:
        return (await self.transport.json("GET", "/v1/webhooks/secret"))["secret"]

    def page_url(self, job_id: str) -> str:
        return f"{self.base_url}/jobs/{job_id}"

    def report_url(self, job_id: str) -> str:
        return f"{self.page_url(job_id)}/report"

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def register_model(self, name: str, *, num_classes: int | None = None,
                             weights: str | Path | None = None, program: str | Path | None = None,
                             bundle: str | Path | None = None, architecture: str | None = None,
                             **preprocessing: Any) -> Model:
        artifacts = {"weights": weights, "program": program, "bundle": bundle}
        data, files = model_registration(name, num_classes, artifacts, architecture,
                                         preprocessing)
        return Model.from_json(await self.transport.json("POST", "/v1/models", data=data,
                                                         files=files))

    async def models(self) -> list[Model]:
        body = await self.transport.json("GET", "/v1/models")
        return [Model.from_json(m) for m in unwrap_list(body, "models")]

    async def model(self, name: str) -> Model:
        return Model.from_json(await self.transport.json("GET", f"/v1/models/{name}"))

    async def layers(self, model: str) -> Layers:
        """As `Client.layers`."""
        return Layers.from_json(await self.transport.json("GET", f"/v1/models/{model}/layers"))

    async def methods(self) -> list[Method]:
        return parse_methods(await self.transport.json("GET", "/v1/methods"))


class AsyncJob:
    """One job, followed from asyncio code."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id
        self.state: JobState | None = None

    def __repr__(self) -> str:
        status = self.state.status.value if self.state else "?"
        return f"<AsyncJob {self.id} {status}>"

    @property
    def status(self) -> JobStatus | None:
        """The status at the last refresh (None before the first)."""
        return self.state.status if self.state else None

    async def refresh(self) -> AsyncJob:
        body = await self.client.transport.json("GET", f"/v1/jobs/{self.id}")
        self.state = JobState.from_json(body)
        return self

    async def wait(self, timeout: float | None = None, progress: bool = False,
                   check: bool = False) -> AsyncJob:
        """Poll until finished (no bar by default: many jobs are usually awaited together)."""
        waiter = Waiter(self.id, timeout, progress)
        try:
            while not waiter.update((await self.refresh()).state):
                await asyncio.sleep(waiter.next_sleep())
        finally:
            waiter.close()
        if check:
            self.state.raise_for_status()
        return self

    async def items(self, page_size: int = 100) -> AsyncIterator[Item]:
        """Every item, page after page by `next_cursor`."""
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = await self.client.transport.json("GET", f"/v1/jobs/{self.id}/items",
                                                    params=params)
            for raw in page.get("items", []):
                yield Item.from_json(raw)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def results(self) -> list[dict[str, Any]]:
        """See `Job.results`."""
        response = await self.client.transport.request(
            "GET", f"/v1/jobs/{self.id}/results", params={"format": "jsonl"})
        return res.parse_rows(response.content)

    async def results_frame(self) -> Any:
        """See `Job.results_frame`."""
        pd = res.pandas()
        response = await self.client.transport.request(
            "GET", f"/v1/jobs/{self.id}/results", params={"format": "parquet"})
        return res.frame(pd, response.content)

    async def save_results(self, path: str | Path, format: str | None = None) -> Path:
        path = Path(path)
        fmt = res.format_of(path, format)
        await self.client.transport.request("GET", f"/v1/jobs/{self.id}/results",
                                            params={"format": fmt}, sink=path)
        return path

    async def report(self) -> dict[str, Any]:
        return await self.client.transport.json("GET", f"/v1/jobs/{self.id}/report")

    async def save_report(self, path: str | Path) -> Path:
        path = Path(path)
        await self.client.transport.request("GET", f"/v1/jobs/{self.id}/report", sink=path)
        return path

    async def download(self, directory: str | Path, concurrency: int = 8) -> Path:
        """As `Job.download`: artifacts under predictable names, a finished job's results
        file and report, then `results.jsonl` (a top_activations job: its report's pictures
        and arrays, the results file, then `report.json`)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        limit = asyncio.Semaphore(concurrency)

        async def fetch(url: str, name: str) -> None:
            async with limit:
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                await self.client.transport.request("GET", url, sink=out / name)

        if (await self.refresh()).state.kind == TOP_ACTIVATIONS:
            report = await self.report()
            await asyncio.gather(*(fetch(url, name) for url, name in dl.report_files(report)))
            await self.save_results(out / res.RESULTS_FILE)
            dl.write_json(out / res.REPORT_FILE, report)
            return out
        tmp = out / (dl.RESULTS + ".part")
        with tmp.open("w") as results:
            chunk: list[tuple[Item, Any]] = []

            async def flush() -> None:
                await asyncio.gather(*(fetch(url, name) for _, plan in chunk
                                       for url, name in dl.fetches(plan)))
                for item, plan in chunk:
                    results.write(json.dumps(dl.result_line(item, plan)) + "\n")
                chunk.clear()

            async for item in self.items():
                chunk.append((item, dl.output_files(item, self.state.raw)))
                if len(chunk) >= 4 * concurrency:
                    await flush()
            await flush()
        if (await self.refresh()).state.status.finished:
            await self.save_results(out / res.RESULTS_FILE)
            await self.save_report(out / res.REPORT_FILE)
        tmp.replace(out / dl.RESULTS)
        return out

    async def export(self, directory: str | Path, format: str = "fiftyone",
                     images: bool = True) -> Path:
        """See `Job.export`."""
        out = Path(directory)
        path, params = exports.request(self.id, format, images)
        archive = exports.archive_path(out, self.id)
        try:
            await self.client.transport.request("GET", path, params=params, sink=archive)
            return exports.unpack(archive, out)
        finally:
            archive.unlink(missing_ok=True)

    async def cancel(self) -> AsyncJob:
        """See `Job.cancel`."""
        body = await self.client.transport.json("DELETE", f"/v1/jobs/{self.id}")
        self.state = JobState.from_json(body)
        return self
