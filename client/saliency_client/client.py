"""The blocking SDK: `Client` talks to the API, `Job` follows one job."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from saliency_client import download as dl
from saliency_client.progress import Waiter
from saliency_client.spec import build_submit, job_spec
from saliency_client.transport import RetryPolicy, Transport
from saliency_client.types import (
    Item,
    JobState,
    JobStatus,
    Method,
    Model,
    Progress,
    parse_methods,
    unwrap_list,
)
from saliency_client.uploads import model_registration


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

    def submit(self, inputs: Any, *, model: str, methods: Any = None, target: Any = None,
               reduce: str | None = None, outputs: Any = None,
               idempotency_key: str | None = None) -> Job:
        """Submit image paths, image bytes, C×H×W arrays, or storage URIs as one job.

        The `Idempotency-Key` (a fresh uuid4 unless given) is reused by every retry, so a
        submit retried after a dropped connection never makes a second job.
        """
        body, data, files = build_submit(inputs, job_spec(model, methods, target, reduce, outputs))
        key = idempotency_key or str(uuid.uuid4())
        answer = self.transport.json("POST", "/v1/jobs", json=body, data=data, files=files,
                                     headers={"Idempotency-Key": key}, idempotent=True)
        return Job(self, answer["id"])

    def job(self, job_id: str) -> Job:
        """A handle on an existing job (nothing is fetched until asked)."""
        return Job(self, job_id)

    def register_model(self, name: str, *, num_classes: int, weights: str | Path | None = None,
                       program: str | Path | None = None, architecture: str | None = None,
                       **preprocessing: Any) -> Model:
        """Register safetensors `weights` for a torchvision `architecture`, or a `.pt2`
        `program`; `preprocessing` takes input_size, resize, mean, std, class_names."""
        data, files = model_registration(name, num_classes, weights, program, architecture,
                                         preprocessing)
        return Model.from_json(self.transport.json("POST", "/v1/models", data=data, files=files))

    def models(self) -> list[Model]:
        return [Model.from_json(m) for m in unwrap_list(self.transport.json("GET", "/v1/models"),
                                                        "models")]

    def model(self, name: str) -> Model:
        return Model.from_json(self.transport.json("GET", f"/v1/models/{name}"))

    def methods(self) -> list[Method]:
        return parse_methods(self.transport.json("GET", "/v1/methods"))


class Job:
    """One job: `refresh`, `wait`, `items`, `download`, `cancel`."""

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
        self.state = JobState.from_json(self.client.transport.json("GET", f"/v1/jobs/{self.id}"))
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
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self.client.transport.json("GET", f"/v1/jobs/{self.id}/items", params=params)
            for raw in page.get("items", []):
                yield Item.from_json(raw)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def download(self, directory: str | Path, workers: int = 8) -> Path:
        """Write every artifact under its predictable name and `results.jsonl`; the
        jsonl is written last, so its presence means the download is complete."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        transport = self.client.transport

        def fetch(url: str, name: str) -> None:
            (out / name).write_bytes(transport.request("GET", url).content)

        tmp = out / (dl.RESULTS + ".part")
        with ThreadPoolExecutor(workers) as pool, tmp.open("w") as results:
            pending: list[tuple[Item, Any, list[Any]]] = []

            def flush() -> None:
                for item, plan, futures in pending:
                    for future in futures:
                        future.result()
                    results.write(json.dumps(dl.result_line(item, plan)) + "\n")
                pending.clear()

            for item in self.items():
                plan = dl.output_files(item)
                futures = [pool.submit(fetch, getattr(o, kind), name)
                           for o, names in plan for kind, name in names.items()]
                pending.append((item, plan, futures))
                if len(pending) >= 4 * workers:
                    flush()
            flush()
        tmp.replace(out / dl.RESULTS)
        return out

    def cancel(self) -> Job:
        self.client.transport.request("DELETE", f"/v1/jobs/{self.id}")
        return self.refresh()
