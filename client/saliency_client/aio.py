"""The asyncio twin of the SDK, for services that follow many jobs at once.

    async with AsyncClient() as client:
        jobs = [await client.submit(batch, model="resnet18") for batch in batches]
        await asyncio.gather(*(job.wait() for job in jobs))
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
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
from saliency_client.transport import AsyncTransport, RetryPolicy
from saliency_client.types import Item, JobState, JobStatus, Layers, Method, Model, Roots


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
        return AsyncJob(self, await self.transport.call(protocol.submit(
            inputs, model=model, methods=methods, target=target, reduce=reduce, outputs=outputs,
            dataset=dataset, seed=seed, kind=kind, idempotency_key=idempotency_key, **fields)))

    async def upload(self, files: Any, *, prefix: str | None = None,
                     root: str | Path | None = None, batch_size: int = 32,
                     max_batch_bytes: int = MAX_BATCH_BYTES, progress: bool = False,
                     on_batch: Callable[[list[str], str], None] | None = None) -> Uploaded:
        """See `Client.upload`: batches are sent one after another."""
        named = named_files(files, root)
        if not named:
            raise ValueError(f"no image files to upload in {files!r}")
        uploads = UploadProgress(len(named), progress, on_batch)
        try:
            for batch in batches(named, batch_size, max_batch_bytes):
                await self._store(batch, prefix, uploads)
        finally:
            uploads.close()
        return uploads.result

    async def _store(self, batch: Batch, prefix: str | None, uploads: UploadProgress) -> None:
        try:
            answer = await self.transport.call(protocol.upload(batch, prefix))
        except ApiError as exc:
            halves = protocol.halves(batch, exc)
            if halves is None:
                raise
            for half in halves:
                await self._store(half, prefix, uploads)
            return
        uploads.stored(batch, answer)

    async def roots(self) -> Roots:
        return await self.transport.call(protocol.roots())

    async def webhook_secret(self) -> str:
        return await self.transport.call(protocol.webhook_secret())

    def page_url(self, job_id: str) -> str:
        return protocol.page_url(self.base_url, job_id)

    def report_url(self, job_id: str) -> str:
        return protocol.report_url(self.base_url, job_id)

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def register_model(self, name: str, *, num_classes: int | None = None,
                             weights: str | Path | None = None, program: str | Path | None = None,
                             bundle: str | Path | None = None, architecture: str | None = None,
                             **preprocessing: Any) -> Model:
        return await self.transport.call(protocol.register_model(
            name, num_classes=num_classes, weights=weights, program=program, bundle=bundle,
            architecture=architecture, **preprocessing))

    async def models(self) -> list[Model]:
        return await self.transport.call(protocol.models())

    async def model(self, name: str) -> Model:
        return await self.transport.call(protocol.model(name))

    async def layers(self, model: str) -> Layers:
        """As `Client.layers`."""
        return await self.transport.call(protocol.layers(model))

    async def methods(self) -> list[Method]:
        return await self.transport.call(protocol.methods())


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
        self.state = await self.client.transport.call(protocol.job(self.id))
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
            page, cursor = await self.client.transport.call(
                protocol.items(self.id, page_size, cursor))
            for item in page:
                yield item
            if not cursor:
                return

    async def results(self) -> list[dict[str, Any]]:
        """See `Job.results`."""
        return await self.client.transport.call(protocol.result_rows(self.id))

    async def results_frame(self) -> Any:
        """See `Job.results_frame`."""
        return await self.client.transport.call(protocol.result_frame(self.id))

    async def save_results(self, path: str | Path, format: str | None = None) -> Path:
        path = Path(path)
        fmt = res.format_of(path, format)
        await self.client.transport.send(protocol.results(self.id, fmt), sink=path)
        return path

    async def report(self) -> dict[str, Any]:
        return await self.client.transport.call(protocol.report(self.id))

    async def save_report(self, path: str | Path) -> Path:
        path = Path(path)
        await self.client.transport.send(protocol.report(self.id).request, sink=path)
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
                await self.client.transport.send(protocol.file(url), sink=out / name)

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
        archive = exports.archive_path(out, self.id)
        try:
            await self.client.transport.send(protocol.export(self.id, format, images),
                                             sink=archive)
            return exports.unpack(archive, out)
        finally:
            archive.unlink(missing_ok=True)

    async def cancel(self) -> AsyncJob:
        """See `Job.cancel`."""
        self.state = await self.client.transport.call(protocol.cancel(self.id))
        return self
