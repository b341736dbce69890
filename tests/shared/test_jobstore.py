"""The job record's owner on a real Redis: records stored by earlier versions read typed, and
each verb changes what it says (items in flight when a run was lost, planning, phases,
progress, stalls, deliveries, the control lease)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import redis

from shared.results.records import InputSource
from shared.spec.datasets import DatasetSpec, parse_dataset
from shared.spec.job import AttributionSpec, parse_job_spec
from shared.state.jobs import NewJob
from shared.state.jobschema import JobField, RecordKeys, queued_key
from shared.state.jobstore import MAX_DELIVERIES_KEPT, JobStore
from shared.status import JobStatus


@pytest.fixture
def jobs(redis_server):
    client = redis.Redis.from_url(f"{redis_server}/11", decode_responses=True)
    client.flushdb()
    yield JobStore(client)
    client.flushdb()


def _create(jobs: JobStore, job: NewJob) -> None:
    pipe = jobs.redis.pipeline(transaction=True)
    jobs.create(job, pipe)
    pipe.execute()


def _job(jobs: JobStore, job_id: str = "j1", **spec) -> str:
    _create(jobs, NewJob(job_id, "acme", parse_job_spec({"model": "m", **spec}),
                         inputs=(InputSource(name="a.png", key="k/a"),)))
    return job_id


# --- items in flight when a run was lost ---------------------------------------------------


def test_a_run_that_ends_leaves_nothing_to_charge(jobs):
    jobs.in_flight("job1", 8, [8, 9, 10, 11])
    jobs.clear_in_flight("job1", 8)
    assert jobs.charge_lost_run("job1", 8) == []
    assert jobs.losses("job1", list(range(8, 16))) == {}


def test_a_run_that_dies_charges_only_its_window_once(jobs):
    jobs.in_flight("job1", 8, [8, 9])
    jobs.in_flight("job1", 8, [10, 11, 12])  # the next batch started: the window moved on
    assert jobs.charge_lost_run("job1", 8) == [10, 11, 12]
    assert jobs.charge_lost_run("job1", 8) == []  # charged once, by the first run to look
    jobs.in_flight("job1", 8, [12])
    jobs.charge_lost_run("job1", 8)
    assert jobs.losses("job1", list(range(8, 16))) == {10: 1, 11: 1, 12: 2}


def test_windows_of_other_chunks_are_their_own(jobs):
    jobs.in_flight("job1", 16, [16, 17])
    assert jobs.charge_lost_run("job1", 8) == []
    assert jobs.charge_lost_run("job1", 16) == [16, 17]


# --- the record -----------------------------------------------------------------------------

# A data-set job with a webhook, field for field as the version before `shared.state.jobstore`
# wrote it (its spec as raw JSON, and a `retention_s` field no longer written).
EARLIER_SPEC = {
    "kind": "attribution", "model": "m", "seed": 3,
    "methods": [{"name": "gradient", "render": "heatmap"},
                {"name": "smoothgrad", "samples": 4, "noise": 0.15, "base": "gradient",
                 "variant": "mean", "render": "heatmap"}],
    "target": "predicted", "reduce": "l2", "outputs": ["npy", "png"], "overlay_opacity": 1.0,
    "map_dtype": "float16", "retention_s": 600,
    "notify": {"url": "https://hooks.example/x", "events": ["succeeded"]},
    "dataset": {"prefix": "s3://data/cats/", "labels": "folder", "label_map": {"cat": 3}},
}
EARLIER_RECORD = {
    "tenant": "acme", "kind": "attribution", "status": "running",
    "spec": json.dumps(EARLIER_SPEC), "layout": "shards", "total": "8", "done": "2",
    "failed": "1", "skipped": "4", "planning": "0", "finalizing": "0", "open": "2",
    "fence": "5", "created_at": "2025-01-02T03:04:05.000Z", "created_ts": "1735787045.0",
    "started_at": "2025-01-02T03:04:06.000Z", "progress_ms": "1735787046000",
    "retention_s": "600", "plan_chunk": "4",
    "notify_attempts": json.dumps([{"attempt": 1, "status": 500}]),
}


def test_a_record_stored_by_the_earlier_version_reads_into_the_typed_spec(jobs):
    jobs.redis.hset(RecordKeys("old").hash, mapping=EARLIER_RECORD)
    job = jobs.get("old")
    assert isinstance(job.spec.work, AttributionSpec) and job.spec.work.reduce == "l2"
    assert job.spec.dataset == DatasetSpec(prefix="s3://data/cats/", labels="folder",
                                           label_map={"cat": 3})
    assert (job.spec.seed, job.spec.retention_s) == (3, 600)
    assert (job.layout, job.plan_chunk, job.total, job.done, job.failed) == ("shards", 4, 8, 2, 1)
    # The API's job is the one the earlier version answered: the stored spec, echoed.
    assert job.to_json() == {
        "id": "old", "kind": "attribution", "status": "running",
        **{k: v for k, v in EARLIER_SPEC.items() if k not in ("kind", "notify")},
        "progress": {"total": 8, "done": 2, "failed": 1, "planning": False,
                     "finalizing": False, "skipped": 4},
        "created_at": "2025-01-02T03:04:05.000Z", "started_at": "2025-01-02T03:04:06.000Z",
        "finished_at": None, "error": None,
        "notify": {**EARLIER_SPEC["notify"], "attempts": [{"attempt": 1, "status": 500}]},
    }


def test_a_data_set_job_is_stored_with_its_parsed_data_set_and_read_back_as_stored(jobs):
    dataset = parse_dataset({"prefix": "s3://data/cats/", "labels": "folder",
                             "label_map": {"cat": 3},
                             "annotations": {"coco": "s3://data/instances.json",
                                             "objects": "masks", "category_map": {"cat": 3}}})
    spec = replace(parse_job_spec({"model": "m", "methods": ["gradient"]}),
                   dataset=dataset)  # as the API accepts it
    _create(jobs, NewJob("d", "acme", spec))
    stored = json.loads(jobs.redis.hget(RecordKeys("d").hash, JobField.SPEC))
    assert stored == spec.to_json()
    job = jobs.get("d")
    assert job.spec.to_json() == stored and job.spec.dataset == spec.dataset
    assert (job.layout, job.planning, job.total) == ("shards", True, 0)


# --- planning, phases and progress ----------------------------------------------------------


def test_planning_records_its_chunk_and_counts_its_attempts(jobs):
    job_id = _job(jobs)
    jobs.begin_planning(job_id, 64)
    assert [jobs.count_plan_attempt(job_id) for _ in range(3)] == [1, 2, 3]
    assert jobs.get(job_id).plan_chunk == 64


def test_entering_the_projection_phase_counts_the_projections_due(jobs):
    job_id = _job(jobs, kind="top_activations", layer="layer1", channels="all")
    pipe = jobs.redis.pipeline(transaction=True)
    jobs.enter_phase(pipe, job_id, 1, projections_due=12)
    pipe.execute()
    jobs.count_projections(job_id, 5)
    job = jobs.get(job_id)
    assert job.phase == 1
    assert job.to_json()["progress"]["projections"] == {"done": 5, "due": 12}


def test_progress_restarts_the_stall_clock_and_stalls_are_counted(jobs):
    job_id = _job(jobs)
    jobs.redis.hset(RecordKeys(job_id).hash, JobField.PROGRESS_MS, 0)
    assert [jobs.count_stall(job_id) for _ in range(2)] == [1, 2]
    assert jobs.get(job_id).progress_ms > 0
    jobs.redis.hset(RecordKeys(job_id).hash, JobField.PROGRESS_MS, 0)
    jobs.bump_attempts(job_id, [0])
    assert jobs.get(job_id).progress_ms > 0


def test_items_attempted_again_are_counted_as_reruns(jobs):
    job_id = _job(jobs)
    jobs.bump_attempts(job_id, [0, 1])
    jobs.bump_attempts(job_id, [1, 2])
    jobs.bump_attempts(job_id, [1])
    assert jobs.reruns(job_id) == 2


def test_a_webhook_keeps_its_last_deliveries(jobs):
    job_id = _job(jobs, notify={"url": "https://hooks.example/x", "events": ["succeeded"]})
    for attempt in range(MAX_DELIVERIES_KEPT + 2):
        jobs.note_delivery(job_id, {"attempt": attempt + 1})
    attempts = jobs.get(job_id).to_json()["notify"]["attempts"]
    assert [a["attempt"] for a in attempts] == list(range(3, MAX_DELIVERIES_KEPT + 3))


def test_a_final_job_leaves_its_tenants_quota_and_the_active_jobs(jobs):
    job_id = _job(jobs)
    assert jobs.queued("acme") == 1 and jobs.active() == [job_id]
    assert jobs.request_final(job_id, JobStatus.CANCELLED, "cancelled by the client")
    assert jobs.finish(job_id, JobStatus.CANCELLED, retention_s=60)
    assert jobs.queued("acme") == 0 and jobs.active() == []
    assert not jobs.finish("gone", JobStatus.CANCELLED, retention_s=60)  # no such job


# --- the control lease ----------------------------------------------------------------------


def test_a_control_lease_taken_over_fences_its_first_holder(jobs):
    job_id = _job(jobs)
    first = jobs.take_control(job_id, 30)
    assert jobs.record_step(job_id, first, {"results": "1"})
    jobs.redis.delete(RecordKeys(job_id).control)  # it expired
    second = jobs.take_control(job_id, 30)
    assert second > first
    assert not jobs.record_step(job_id, first, {"report": "1"})  # fenced
    jobs.release_control(job_id, first)  # not its lease any more: nothing happens
    assert jobs.control_held(job_id)
    assert jobs.checkpoint(job_id) == {"results": "1"}
    assert jobs.redis.get(queued_key("acme")) == "1"


# --- a kind's echo --------------------------------------------------------------------------


def test_a_top_activations_job_keeps_why_the_service_chose_its_methods(jobs):
    """The reason is part of the typed spec the store writes, read back and echoed; methods
    given have none."""
    from shared.spec.top_activations import NOT_RECORDED

    fields = {"kind": "top_activations", "layer": "layer1", "channels": [0]}
    _job(jobs, "chosen", **fields)
    _job(jobs, "given", **fields, methods=["deconvnet"])
    chosen, given = jobs.get("chosen"), jobs.get("given")
    assert chosen.spec.work.methods_reason == NOT_RECORDED
    assert chosen.to_json()["methods_reason"] == NOT_RECORDED
    assert given.spec.work.methods_reason is None and "methods_reason" not in given.to_json()
