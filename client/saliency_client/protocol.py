"""The SDK's sans-IO core: each API call as the request to send and the parser of its answer.

`Client` and `AsyncClient` are thin drivers over it: they hand `call.request` to their
transport and its 2xx answer to `call.parse`. Nothing here touches the network (input files
are read into the request body), so every call is tested against recorded answers. Error
answers never reach a parser: `exchange` raises them as `ApiError` or retries them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from saliency_client import exports
from saliency_client import results as res
from saliency_client.datasets import TOO_LARGE, Dataset, upload_parts
from saliency_client.errors import ApiError
from saliency_client.exchange import Request
from saliency_client.spec import build_submit, job_spec
from saliency_client.types import (
    Item,
    JobState,
    Layers,
    Method,
    Model,
    Roots,
    parse_methods,
    unwrap_list,
)
from saliency_client.uploads import model_registration

T = TypeVar("T")
Batch = list[tuple[str, Path]]
Page = tuple[list[Item], str | None]  # a page of items and the cursor of the next, if any


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: the request to send, and the parser of its 2xx answer."""

    request: Request
    parse: Callable[[httpx.Response], T]


def _json(response: httpx.Response) -> Any:
    return response.json()


def _body(parse: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    """A parser of a JSON answer: `parse` applied to its decoded body."""
    return lambda response: parse(response.json())


def submit(inputs: Any, *, model: str, methods: Any, target: Any, reduce: str | None,
           outputs: Any, dataset: Dataset | dict[str, Any] | None, seed: int | None,
           kind: str | None, idempotency_key: str | None, **fields: Any) -> Call[str]:
    """`POST /v1/jobs`, answering the new job's id. Its `Idempotency-Key` (a fresh uuid4
    unless given) travels with the request, so every retry of it sends the same one."""
    spec = job_spec(model, methods, target, reduce, outputs, seed=seed, kind=kind, **fields)
    body, data, files = build_submit(inputs, spec, dataset)
    key = idempotency_key or str(uuid.uuid4())
    request = Request("POST", "/v1/jobs", json=body, data=data, files=files,
                      headers={"Idempotency-Key": key}, idempotent=True)
    return Call(request, _body(lambda answer: answer["id"]))


def upload(batch: Batch, prefix: str | None) -> Call[dict[str, Any]]:
    """`POST /v1/uploads` of one batch of named files, answering `{"prefix", "uris"}`."""
    data, parts = upload_parts(batch, prefix)
    request = Request("POST", "/v1/uploads", data=data, files=parts,
                      idempotent=True)  # the same names overwrite
    return Call(request, _json)


def halves(batch: Batch, error: ApiError) -> tuple[Batch, Batch] | None:
    """The two batches to send instead of one the API found too large, or None when `error`
    is another error or the batch is one file (nothing to split)."""
    if error.status != TOO_LARGE or len(batch) == 1:
        return None
    half = len(batch) // 2
    return batch[:half], batch[half:]


def roots() -> Call[Roots]:
    return Call(Request("GET", "/v1/roots"), _body(Roots.from_json))


def webhook_secret() -> Call[str]:
    return Call(Request("GET", "/v1/webhooks/secret"), _body(lambda answer: answer["secret"]))


def register_model(name: str, *, num_classes: int | None, weights: str | Path | None,
                   program: str | Path | None, bundle: str | Path | None,
                   architecture: str | None, **preprocessing: Any) -> Call[Model]:
    """`POST /v1/models`: the spec and the one artifact given (see `model_registration`)."""
    artifacts = {"weights": weights, "program": program, "bundle": bundle}
    data, files = model_registration(name, num_classes, artifacts, architecture, preprocessing)
    return Call(Request("POST", "/v1/models", data=data, files=files), _body(Model.from_json))


def models() -> Call[list[Model]]:
    return Call(Request("GET", "/v1/models"), _body(
        lambda answer: [Model.from_json(m) for m in unwrap_list(answer, "models")]))


def model(name: str) -> Call[Model]:
    return Call(Request("GET", f"/v1/models/{name}"), _body(Model.from_json))


def layers(model: str) -> Call[Layers]:
    return Call(Request("GET", f"/v1/models/{model}/layers"), _body(Layers.from_json))


def methods() -> Call[list[Method]]:
    return Call(Request("GET", "/v1/methods"), _body(parse_methods))


def page_url(base_url: str, job_id: str) -> str:
    """The job's page in the browser."""
    return f"{base_url}/jobs/{job_id}"


def report_url(base_url: str, job_id: str) -> str:
    """The page of the job's report (an attribution job's audit) in the browser."""
    return f"{page_url(base_url, job_id)}/report"


def job(job_id: str) -> Call[JobState]:
    return Call(Request("GET", f"/v1/jobs/{job_id}"), _body(JobState.from_json))


def cancel(job_id: str) -> Call[JobState]:
    return Call(Request("DELETE", f"/v1/jobs/{job_id}"), _body(JobState.from_json))


def _page(answer: dict[str, Any]) -> Page:
    return [Item.from_json(raw) for raw in answer.get("items", [])], answer.get("next_cursor")


def items(job_id: str, page_size: int, cursor: str | None) -> Call[Page]:
    """One page of a job's items, from `cursor` (None: the first page)."""
    params: dict[str, Any] = {"limit": page_size}
    if cursor:
        params["cursor"] = cursor
    return Call(Request("GET", f"/v1/jobs/{job_id}/items", params=params), _body(_page))


def results(job_id: str, format: str) -> Request:
    """The results file in `format` (`jsonl`, `csv`, `parquet`), to save or print."""
    return Request("GET", f"/v1/jobs/{job_id}/results", params={"format": format})


def result_rows(job_id: str) -> Call[list[dict[str, Any]]]:
    """The results file as rows (JSON lines)."""
    return Call(results(job_id, "jsonl"), lambda response: res.parse_rows(response.content))


def result_frame(job_id: str) -> Call[Any]:
    """The results file as a pandas DataFrame; MissingDependency at once without pandas."""
    pd = res.pandas()
    return Call(results(job_id, "parquet"), lambda response: res.frame(pd, response.content))


def report(job_id: str) -> Call[dict[str, Any]]:
    """The job's report (`{"kind": ..., ...}`), also saved as a file."""
    return Call(Request("GET", f"/v1/jobs/{job_id}/report"), _json)


def export(job_id: str, format: str, images: bool) -> Request:
    """The job's export archive, saved as a file (`exports` module)."""
    path, params = exports.request(job_id, format, images)
    return Request("GET", path, params=params)


def file(url: str) -> Request:
    """An artifact or a report's file, by the URL the API gave (signed ones go keyless)."""
    return Request("GET", url)
