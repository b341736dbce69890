"""The two layouts of a job's items (`shared.state.itemlayout`) on a real Redis and local storage:
both read inputs, one record, a page and every record in order alike, the items a cancelled
job never ran made in one place, which `/items` and the results file then agree on."""

from __future__ import annotations

import io
import uuid

import pyarrow.parquet as pq
import pytest
from e2e.helpers import image_bytes
from runtime_testing import TENANT

from shared.results.records import InputSource
from shared.spec.job import job_spec_from_json
from shared.state.itemlayout import PlannedItems, RedisItems
from shared.state.jobs import NewJob
from shared.state.jobschema import ChunkStatus
from shared.status import ItemStatus, JobStatus
from shared.storage.keys import JobKeys
from worker.jobs import runner

ITEMS = 6  # the runtime's chunks hold 4: one chunk runs, the rest never does
UNRUN = "not run: the job ended first"


def _sources(rt) -> list[dict]:
    for i in range(ITEMS):
        (rt.root / f"{i}.png").write_bytes(image_bytes(i, size=32))
    return [{"uri": f"{rt.root.as_uri()}/{i}.png", "id": f"id-{i}"} for i in range(ITEMS)]


def _inline_job(rt) -> str:
    """An inline job as the API stores it (inputs in Redis), its two chunks ready."""
    job_id = uuid.uuid4().hex
    spec = job_spec_from_json({"kind": "attribution", "model": rt.model,
                               "methods": ["gradient"]})
    inputs = tuple(InputSource(name=s["uri"], uri=s["uri"], id=s["id"]) for s in _sources(rt))
    pipe = rt.ctx.redis.pipeline(transaction=True)
    rt.ctx.jobs.create(NewJob(job_id, TENANT, spec, inputs=inputs), pipe)
    rt.ctx.chunks.add(pipe, job_id, [(0, 4), (4, ITEMS)], ChunkStatus.READY)
    pipe.execute()
    return job_id


def _dataset_job(rt) -> str:
    """A data-set job, planned into two chunks (inputs in plan files)."""
    job_id = rt.dataset_job({"manifest": rt.manifest("m.jsonl", _sources(rt))})
    rt.plan(job_id)
    return job_id


@pytest.fixture(params=["redis", "planned"])
def cancelled(request, runtime):
    """A job of either layout whose first chunk ran, then was cancelled and finalized."""
    rt = runtime
    job_id = _inline_job(rt) if request.param == "redis" else _dataset_job(rt)
    runner.run_chunk(rt.ctx, job_id, 0, "w")
    assert rt.ctx.jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    runner.advance(rt.ctx, job_id)
    job = rt.ctx.jobs.get(job_id)
    assert job.status is JobStatus.CANCELLED
    layout = rt.ctx.layout(job)
    assert type(layout) is {"redis": RedisItems, "planned": PlannedItems}[request.param]
    return rt, job, layout


def test_a_layout_reads_records_in_order_and_by_page_the_unrun_made_from_their_inputs(
        cancelled):
    _, _, layout = cancelled
    records = list(layout.records())
    assert [r.index for r in records] == list(range(ITEMS))
    assert [r.status for r in records] == [ItemStatus.SUCCEEDED] * 4 + [ItemStatus.CANCELLED] * 2
    sources = layout.inputs(4, ITEMS)
    for record, source in zip(records[4:], sources, strict=True):
        assert (record.input, record.id, record.error) == (source.name, source.id, UNRUN)
    assert [r.index for r in layout.records(3)] == [3, 4, 5]
    assert layout.record(1) == records[1] and layout.record(5) is None
    page = layout.page(2, ITEMS)  # each item with its record, or what names it
    assert [record.index for _, record in page[:2]] == [2, 3]
    assert [record for _, record in page[2:]] == [None, None]
    assert [source.id for source, _ in page[2:]] == ["id-4", "id-5"]


def test_items_and_the_results_file_give_an_unrun_item_the_same_error(cancelled):
    from api.items import item_json

    rt, job, layout = cancelled
    rows = pq.read_table(io.BytesIO(rt.ctx.storage.get(JobKeys(TENANT, job.id).results())))
    errors = {r["index"]: (r["status"], r["error"]) for r in rows.to_pylist()}
    for index, (source, record) in enumerate(layout.page(4, ITEMS), 4):
        shown = item_json(job, index, source, record)
        assert (shown["status"], shown["error"]) == errors[index] == ("cancelled", UNRUN)
        assert shown["id"] == f"id-{index}"
