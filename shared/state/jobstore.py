"""The one writer of a job's record in Redis: its hash, inputs, item records, attempt and loss
counts, control lease and finalizer checkpoint, changed only through the verbs below (their
scripts: `shared.state.jobscripts`, whose `JOB_LUA` also makes the changes the chunk ledger makes
to the job's hash in one step with its own).

A job's status moves `queued` → `running` (its first chunk taken, `shared.state.chunks`) → final:
`request_final` marks it `finalizing` with the status it will take, and `finish` sets that
status once the results file and the report are written. An upload job's items are recorded
in two sets of indices besides the counters, so recording an item twice (a redelivered task)
never counts it twice, and only the holder of the chunk's lease may record (fencing). Every
key and field is named in `shared.state.jobschema`; the scripts get their keys as `KEYS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from shared.results.records import InputSource, ItemRecord
from shared.state.chunks import Lease
from shared.state.jobs import Job, NewJob
from shared.state.jobschema import (
    ACTIVE_JOBS,
    EXPIRY,
    LATENCY,
    STATS,
    WEBHOOKS_DUE,
    RecordKeys,
    jobs_stat,
    queued_key,
    tombstone_key,
)
from shared.state.jobschema import JobField as F
from shared.state.jobscripts import (
    CHECKPOINT,
    END_PLANNING,
    FINISH,
    PROGRESS_ITEM,
    RECORD_ITEM,
    REQUEST_FINAL,
    TAKE_CONTROL,
)
from shared.state.redisio import now_iso, now_ms
from shared.status import JobStatus

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
MAX_DELIVERIES_KEPT = 50  # a webhook's attempts listed on the job

class JobStore:
    """Jobs, their inputs and item records, and their status transitions."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record_item = client.register_script(RECORD_ITEM)
        self._progress_item = client.register_script(PROGRESS_ITEM)
        self._request_final = client.register_script(REQUEST_FINAL)
        self._finish = client.register_script(FINISH)
        self._end_planning = client.register_script(END_PLANNING)
        self._checkpoint = client.register_script(CHECKPOINT)
        self._take_control = client.register_script(TAKE_CONTROL)

    # --- creating -----------------------------------------------------------------------------

    def create(self, job: NewJob, pipe: Any) -> None:
        """Store a queued job and its inputs in the caller's transaction (`pipe`)."""
        keys = RecordKeys(job.id)
        pipe.hset(keys.hash, mapping=job.fields())
        for start in range(0, len(job.inputs), 1000):
            batch = job.inputs[start:start + 1000]
            pipe.rpush(keys.inputs, *(json.dumps(i.to_json()) for i in batch))
        pipe.sadd(ACTIVE_JOBS, job.id)
        pipe.hincrby(STATS, jobs_stat(JobStatus.QUEUED), 1)
        pipe.incrby(queued_key(job.tenant), job.items)

    # --- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(RecordKeys(job_id).hash)
        if not raw or F.STATUS not in raw:
            return None
        return Job.from_hash(job_id, raw)

    def stopping(self, job_id: str) -> bool:
        """Whether a job is finalizing or final: its chunks stop taking batches."""
        finalizing, status = self.redis.hmget(RecordKeys(job_id).hash, F.FINALIZING, F.STATUS)
        return finalizing == "1" or status is None or JobStatus(status).is_final

    def open_chunks(self, job_id: str) -> int:
        """Chunks of the job's current phase not done yet (0 once the phase is complete)."""
        return int(self.redis.hget(RecordKeys(job_id).hash, F.OPEN) or 0)

    def reruns(self, job_id: str) -> int:
        """Item attempts beyond each item's first (see `bump_attempts`)."""
        return int(self.redis.hget(RecordKeys(job_id).hash, F.RERUNS) or 0)

    def active(self) -> list[str]:
        return sorted(self.redis.smembers(ACTIVE_JOBS))

    def queued(self, tenant: str) -> int:
        """The tenant's items not yet done or failed (what its quota counts)."""
        return int(self.redis.get(queued_key(tenant)) or 0)

    # --- inputs and items (upload and inline jobs) --------------------------------------------

    def input_range(self, job_id: str, start: int, stop: int) -> list[InputSource]:
        """Inputs `start` to `stop` (exclusive) of an upload or inline job."""
        if stop <= start:
            return []
        raw = self.redis.lrange(RecordKeys(job_id).inputs, start, stop - 1)
        return [InputSource.from_json(json.loads(r)) for r in raw]

    def record_item(self, lease: Lease, record: ItemRecord) -> bool:
        """Write an item's record under `lease`; False if fenced. Writing it again
        overwrites and never counts it twice."""
        keys = RecordKeys(lease.job_id)
        return int(self._record_item(
            keys=[keys.hash, keys.items, keys.done, keys.failed, lease.key, STATS,
                  queued_key(lease.tenant)],
            args=[record.index, json.dumps(record.to_json()), int(record.ok), lease.token,
                  record.error or "", now_ms()],
        )) == 1

    def item_progress(self, lease: Lease, record: ItemRecord) -> bool:
        """Show an unfinished item's progress (its record, not yet counted); False if fenced."""
        keys = RecordKeys(lease.job_id)
        return int(self._progress_item(
            keys=[keys.items, keys.done, keys.failed, lease.key],
            args=[record.index, json.dumps(record.to_json()), lease.token],
        )) >= 0

    def items(self, job_id: str, indices: list[int]) -> list[ItemRecord | None]:
        if not indices:
            return []
        raw = self.redis.hmget(RecordKeys(job_id).items, [str(i) for i in indices])
        return [ItemRecord.from_json(json.loads(r)) if r else None for r in raw]

    def unfinished(self, job_id: str, indices: list[int]) -> list[int]:
        """Those of `indices` not recorded yet (one round trip, whatever the job's size)."""
        if not indices:
            return []
        keys = RecordKeys(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.smismember(keys.done, indices)
        pipe.smismember(keys.failed, indices)
        done, failed = pipe.execute()
        return [i for i, d, f in zip(indices, done, failed, strict=True) if not (d or f)]

    def bump_attempts(self, job_id: str, indices: Iterable[int]) -> None:
        """Count one more attempt at each item (a batch starts).

        A batch starting is progress: a data-set chunk publishes nothing until its run
        commits, and without this a long run would look stalled to the reconciler
        (`SALIENCY_STALL_S`) and be fenced. Attempts beyond an item's first (its worker was
        lost, or its run fenced) are counted in the job's `reruns`: the work done twice,
        which at-least-once allows and operators watch."""
        keys = RecordKeys(job_id)
        pipe = self.redis.pipeline(transaction=True)
        for i in indices:
            pipe.hincrby(keys.attempts, str(i), 1)
        pipe.hset(keys.hash, F.PROGRESS_MS, now_ms())
        counts = pipe.execute()[:-1]
        again = sum(1 for n in counts if n > 1)
        if again:
            self.redis.hincrby(keys.hash, F.RERUNS, again)

    # --- items in flight when a run was lost --------------------------------------------------
    # Before each load a chunk's run records its window (the batch the model is on and the
    # batch being read) and clears it when it ends, so a window found at the start of the next
    # run names the items in flight when the last one died; each is charged one loss. An item
    # charged `SALIENCY_MAX_ATTEMPTS` losses fails alone; its neighbours, in flight with it
    # only once, are charged at most once.

    def in_flight(self, job_id: str, start: int, indices: list[int]) -> None:
        """Record the items chunk `start`'s run is about to read or run."""
        self.redis.hset(RecordKeys(job_id).inflight, str(start), json.dumps(indices))

    def clear_in_flight(self, job_id: str, start: int) -> None:
        """Chunk `start`'s run ended: nothing of it is in flight any more."""
        self.redis.hdel(RecordKeys(job_id).inflight, str(start))

    def charge_lost_run(self, job_id: str, start: int) -> list[int]:
        """Charge a loss to each item chunk `start`'s last run left in flight; returns them."""
        keys = RecordKeys(job_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(keys.inflight, str(start))
        pipe.hdel(keys.inflight, str(start))
        raw = pipe.execute()[0]
        items = json.loads(raw) if raw else []
        if items:
            pipe = self.redis.pipeline(transaction=False)
            for i in items:
                pipe.hincrby(keys.losses, str(i), 1)
            pipe.execute()
        return items

    def losses(self, job_id: str, indices: list[int]) -> dict[int, int]:
        """How many lost runs each item was in flight in (items never in one left out)."""
        if not indices:
            return {}
        counts = self.redis.hmget(RecordKeys(job_id).losses, [str(i) for i in indices])
        return {i: int(n) for i, n in zip(indices, counts, strict=True) if n}

    # --- planning and phases ------------------------------------------------------------------

    def begin_planning(self, job_id: str, chunk_size: int) -> None:
        """A data-set job's planner starts (again): each plan file holds `chunk_size` inputs."""
        self.redis.hset(RecordKeys(job_id).hash, F.PLAN_CHUNK, chunk_size)

    def count_plan_attempt(self, job_id: str) -> int:
        """One more planning of the job started; how many have."""
        return int(self.redis.hincrby(RecordKeys(job_id).hash, F.PLAN_ATTEMPTS, 1))

    def end_planning(self, job: Job, total: int, skipped: int, quota: int,
                     error: str, fail: bool = False) -> bool:
        """A data-set job's planning is over: `total` items, counted among its tenant's queued
        items. If that takes the tenant past `quota` (or with `fail`), the job is marked
        finalizing towards `failed` with `error`, at once: True if it was."""
        return bool(self._end_planning(
            keys=[RecordKeys(job.id).hash, queued_key(job.tenant)],
            args=[total, skipped, quota, error, int(fail), JobStatus.QUEUED, JobStatus.RUNNING,
                  JobStatus.FAILED]))

    def enter_phase(self, pipe: Any, job_id: str, phase: int,
                    projections_due: int | None = None) -> None:
        """Move the job to `phase` in the caller's transaction (`pipe`), which also adds the
        phase's chunks; a top-activations job's projection phase counts its projections."""
        fields: dict[str, int] = {F.PHASE: phase}
        if projections_due is not None:
            fields.update({F.PROJECTIONS_DUE: projections_due, F.PROJECTIONS_DONE: 0})
        pipe.hset(RecordKeys(job_id).hash, mapping=fields)

    def count_steps(self, job_id: str, n: int) -> None:
        """A visualization made `n` more optimization steps (steps × items)."""
        self._progress(job_id, F.STEPS_DONE, n)

    def count_projections(self, job_id: str, n: int) -> None:
        """A top-activations job wrote `n` more projections."""
        self._progress(job_id, F.PROJECTIONS_DONE, n)

    def _progress(self, job_id: str, field: F, n: int) -> None:
        keys = RecordKeys(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(keys.hash, field, n)
        pipe.hset(keys.hash, F.PROGRESS_MS, now_ms())
        pipe.execute()

    def count_stall(self, job_id: str) -> int:
        """The reconciler found the job without progress: its stall clock starts again. How
        many times it was found so."""
        keys = RecordKeys(job_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(keys.hash, F.STALLS, 1)
        pipe.hset(keys.hash, F.PROGRESS_MS, now_ms())
        return int(pipe.execute()[0])

    # --- ending -------------------------------------------------------------------------------

    def request_final(self, job_id: str, status: JobStatus, error: str | None = None,
                      allowed_from: tuple[JobStatus, ...] = (JobStatus.QUEUED,
                                                             JobStatus.RUNNING)) -> bool:
        """Mark a job `finalizing` towards `status`; True if this call did (first one wins)."""
        return bool(self._request_final(keys=[RecordKeys(job_id).hash], args=[
            status.value, error or "", *(s.value for s in allowed_from)]))

    def finish(self, job_id: str, status: JobStatus, retention_s: int,
               notify_event: str | None = None, notify_after_s: float = 0) -> bool:
        """Set the final status once the finalizer has written everything. With
        `notify_event`, the job's first webhook delivery becomes due in `notify_after_s`, in
        the same transaction: the finalizer sends it at once, and if it dies before it can,
        the reconciler sends it then (at least once)."""
        keys = RecordKeys(job_id)
        tenant = self.redis.hget(keys.hash, F.TENANT)
        if tenant is None:
            return False
        webhook = f"{job_id}:{notify_event}:0" if notify_event else ""
        finished = bool(self._finish(
            keys=[keys.hash, STATS, ACTIVE_JOBS, WEBHOOKS_DUE, EXPIRY, queued_key(tenant)],
            args=[job_id, status.value, now_iso(), time.time() + retention_s, webhook,
                  time.time() + notify_after_s],
        ))
        if finished:
            created = self.redis.hget(keys.hash, F.CREATED_TS)
            if created:
                self._observe_latency(time.time() - float(created))
        return finished

    def _observe_latency(self, seconds: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for le in LATENCY_BUCKETS_S:
            if seconds <= le:
                pipe.hincrby(LATENCY, str(le), 1)
        pipe.hincrby(LATENCY, "+Inf", 1)
        pipe.hincrbyfloat(LATENCY, "sum", seconds)
        pipe.execute()

    def note_delivery(self, job_id: str, attempt: dict[str, Any]) -> None:
        """List one delivery attempt of the job's webhook (the last `MAX_DELIVERIES_KEPT`)."""
        keys = RecordKeys(job_id)
        raw = self.redis.hget(keys.hash, F.NOTIFY_ATTEMPTS)
        attempts = [*(json.loads(raw) if raw else []), attempt][-MAX_DELIVERIES_KEPT:]
        self.redis.hset(keys.hash, F.NOTIFY_ATTEMPTS, json.dumps(attempts))

    def compact(self, job_id: str) -> None:
        """Drop what a final job no longer needs: its ledger and attempt counts."""
        self.redis.delete(*RecordKeys(job_id).run_state)

    def expired(self, now: float, limit: int = 100) -> list[str]:
        return self.redis.zrangebyscore(EXPIRY, 0, now, start=0, num=limit)

    def delete(self, job_id: str, tenant: str, tombstone_ttl_s: int) -> None:
        """Forget an expired job, leaving a tombstone (`410 expired`) for a while."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(tombstone_key(job_id), tenant, ex=tombstone_ttl_s)
        pipe.delete(*RecordKeys(job_id).all)
        pipe.zrem(EXPIRY, job_id)
        pipe.srem(ACTIVE_JOBS, job_id)
        pipe.execute()

    def forget(self, job_id: str) -> None:
        """Stop examining a job whose record is gone."""
        self.redis.srem(ACTIVE_JOBS, job_id)

    def tombstone(self, job_id: str) -> str | None:
        """The tenant of an expired job whose tombstone is still kept, else None."""
        return self.redis.get(tombstone_key(job_id))

    # --- the job's control lease (planner, next phase, finalizer) -----------------------------

    def take_control(self, job_id: str, lease_s: int) -> int | None:
        """The job-level lease for its planner or finalizer: a token, or None if held."""
        keys = RecordKeys(job_id)
        token = int(self._take_control(keys=[keys.hash, keys.control], args=[lease_s * 1000]))
        return token or None

    def release_control(self, job_id: str, token: int) -> None:
        key = RecordKeys(job_id).control
        if self.redis.get(key) == str(token):
            self.redis.delete(key)

    def control_held(self, job_id: str) -> bool:
        return bool(self.redis.exists(RecordKeys(job_id).control))

    # --- the finalizer's checkpoint (the steps it has written) ------------------------------

    def checkpoint(self, job_id: str) -> dict[str, str]:
        """The steps a job's finalizers have recorded so far (field -> value)."""
        return self.redis.hgetall(RecordKeys(job_id).checkpoint)

    def record_step(self, job_id: str, token: int, steps: dict[str, str]) -> bool:
        """Record finalizer steps under the control lease `token`; False if it was taken over."""
        keys = RecordKeys(job_id)
        args: list[Any] = [token]
        for name, value in steps.items():
            args += [name, value]
        return bool(self._checkpoint(keys=[keys.control, keys.checkpoint], args=args))

    def clear_checkpoint(self, job_id: str) -> None:
        self.redis.delete(RecordKeys(job_id).checkpoint)
