"""Jobs in Redis: their state, progress and item records, and the transitions between states.

A job is a hash. Its status moves `queued` → `running` (when its first chunk is taken,
`shared.chunks`) → final. A job becomes final only after its finalizer has run
(`request_final` marks it `finalizing` with the status it will take; `finish` sets that
status once the results file and the report are written), so a final job's files are
always readable. Progress counters live in the job hash; an upload job's items are also
recorded in two sets of indices, so recording an item twice (a redelivered task) never
counts it twice, and only the holder of the chunk's lease may record (fencing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from shared.modelstore import ModelPin
from shared.records import InputSource, ItemRecord
from shared.redisio import (
    ACTIVE_JOBS,
    LATENCY,
    PREFIX,
    STATS,
    WEBHOOKS_DUE,
    job_key,
    job_sub,
    lease_key,
    now_iso,
    now_ms,
    tenant_key,
)
from shared.status import JobStatus

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LAYOUTS = ("items", "shards")
CONTROL = "ctl"
EXPIRY = PREFIX + "expiry"  # job id -> when its results expire (unix s)
# Every Redis key of a job besides its hash, by suffix (the ledger's are `shared.chunks`').
SUBKEYS = ("inputs", "items", "done", "failed", "attempts", "inflight", "losses", "cstop",
           "cstate", "cattempts", "clost", "csent", "cworker", "cseg", "final")


def tombstone_key(job_id: str) -> str:
    return f"{PREFIX}tomb:{job_id}"

# KEYS: job, items, done set, failed set, lease; ARGV: index, record, ok (1/0), token,
# error, now ms, prefix. -1: fenced; 1: recorded.
_RECORD_ITEM = """
if redis.call('GET', KEYS[5]) ~= ARGV[4] then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local into, other, field, ofield = KEYS[3], KEYS[4], 'done', 'failed'
if ARGV[3] ~= '1' then into, other, field, ofield = KEYS[4], KEYS[3], 'failed', 'done' end
local P = ARGV[7]
if redis.call('SREM', other, ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ofield, -1)
  redis.call('INCRBY', P .. 'tenant:' .. redis.call('HGET', KEYS[1], 'tenant') .. ':queued', 1)
end
if redis.call('SADD', into, ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], field, 1)
  redis.call('HINCRBY', P .. 'stats', 'items_' .. field, 1)
  redis.call('INCRBY', P .. 'tenant:' .. redis.call('HGET', KEYS[1], 'tenant') .. ':queued', -1)
  redis.call('HSET', KEYS[1], 'progress_ms', ARGV[6])
end
if ARGV[3] ~= '1' and ARGV[5] ~= '' then redis.call('HSETNX', KEYS[1], 'first_error', ARGV[5]) end
return 1
"""

# KEYS: items, done set, failed set, lease; ARGV: index, record, token. An item's record as
# its work goes on (a visualization's pictures so far): written unless the item is finished.
_PROGRESS_ITEM = """
if redis.call('GET', KEYS[4]) ~= ARGV[3] then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 or redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1
then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: job; ARGV: final status, error, allowed statuses... Mark a job as finalizing.
_REQUEST_FINAL = """
if redis.call('HGET', KEYS[1], 'finalizing') == '1' then return 0 end
local cur = redis.call('HGET', KEYS[1], 'status')
local allowed = false
for i = 3, #ARGV do if ARGV[i] == cur then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'finalizing', '1', 'final_status', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
return 1
"""

# KEYS: job, stats, active, webhooks due; ARGV: status, now iso, expires at (unix s), prefix,
# the job's first webhook delivery ("job:event:0", or ""), when it is due (unix s).
_FINISH = """
if redis.call('HGET', KEYS[1], 'finalizing') ~= '1' then return 0 end
local cur = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'finalizing', '0',
           'expires_at', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'jobs:' .. cur, -1)
redis.call('HINCRBY', KEYS[2], 'jobs:' .. ARGV[1], 1)
redis.call('SREM', KEYS[3], string.sub(KEYS[1], #ARGV[4] + 5))
redis.call('ZADD', ARGV[4] .. 'expiry', ARGV[3], string.sub(KEYS[1], #ARGV[4] + 5))
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5]) end
local rest = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
  - tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
  - tonumber(redis.call('HGET', KEYS[1], 'failed') or '0')
if rest > 0 then
  redis.call('INCRBY', ARGV[4] .. 'tenant:' .. redis.call('HGET', KEYS[1], 'tenant')
             .. ':queued', -rest)
end
return 1
"""

# KEYS: job, the tenant's queued count; ARGV: total, skipped, quota, error, fail anyway (1/0).
# A planned job's items are counted as queued; past the quota (or when told to), the job is
# marked finalizing towards `failed` in the same step, so its chunks are never released.
_END_PLANNING = """
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'skipped', ARGV[2], 'planning', 0)
local queued = redis.call('INCRBY', KEYS[2], ARGV[1])
if ARGV[5] ~= '1' and queued <= tonumber(ARGV[3]) then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
if redis.call('HGET', KEYS[1], 'finalizing') == '1' or (status ~= 'queued' and status ~= 'running')
then return 0 end
redis.call('HSET', KEYS[1], 'finalizing', '1', 'final_status', 'failed', 'error', ARGV[4])
return 1
"""

# KEYS: control lease, checkpoint; ARGV: token, then field, value pairs. Only the holder of
# the job's control lease records its finalizer's steps.
_CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: lease; ARGV: token, lease ms.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


def _flag(raw: dict[str, str], name: str) -> bool:
    return raw.get(name) == "1"


@dataclass(frozen=True)
class Job:
    """A job as stored; `to_json` is the API's representation."""

    id: str
    tenant: str
    kind: str
    status: JobStatus
    spec: dict[str, Any]
    layout: str
    total: int
    done: int
    failed: int
    skipped: int
    planning: bool
    finalizing: bool
    final_status: JobStatus | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    first_error: str | None
    created_ts: float
    progress_ms: int
    expires_at: float | None
    extra_progress: dict[str, Any]
    plan_chunk: int = 0  # items per planned chunk of a data-set job (its plan files)
    phase: int = 0  # a multi-phase job's current phase (0: the one over its items)
    notify_attempts: tuple[dict[str, Any], ...] = ()
    model_pin: ModelPin | None = None  # None only for jobs stored before jobs were pinned

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def to_json(self) -> dict[str, Any]:
        progress: dict[str, Any] = {"total": self.total, "done": self.done,
                                    "failed": self.failed, "planning": self.planning,
                                    "finalizing": self.finalizing}
        if self.skipped:
            progress["skipped"] = self.skipped
        progress.update(self.extra_progress)
        out = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status.value,
            **{k: v for k, v in self.spec.items() if k not in ("kind", "notify")},
            "progress": progress,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }
        if self.spec.get("notify"):
            out["notify"] = {**self.spec["notify"], "attempts": list(self.notify_attempts)}
        return out


@dataclass(frozen=True)
class NewJob:
    """What the API knows of a job when it stores it."""

    id: str
    tenant: str
    kind: str
    spec: dict[str, Any]
    layout: str = "items"
    inputs: tuple[InputSource, ...] = ()
    planning: bool = False
    retention_s: int | None = None
    total: int | None = None  # items, when they are not the inputs (a visualization's)
    steps: int | None = None  # a visualization's total of optimization steps
    model_pin: ModelPin | None = None  # the model record the job was accepted for


class JobStore:
    """Jobs, their inputs and item records, and their status transitions."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record_item = client.register_script(_RECORD_ITEM)
        self._progress_item = client.register_script(_PROGRESS_ITEM)
        self._request_final = client.register_script(_REQUEST_FINAL)
        self._finish = client.register_script(_FINISH)
        self._end_planning = client.register_script(_END_PLANNING)
        self._checkpoint = client.register_script(_CHECKPOINT)
        self._take = client.register_script(_TAKE)

    # --- creating -----------------------------------------------------------------------------

    def create(self, job: NewJob, pipe: Any) -> None:
        """Store a queued job and its inputs in the caller's transaction (`pipe`)."""
        total = len(job.inputs) if job.total is None else job.total
        fields: dict[str, Any] = {
            "tenant": job.tenant, "kind": job.kind, "status": JobStatus.QUEUED.value,
            "spec": json.dumps(job.spec), "layout": job.layout, "total": total, "done": 0,
            "failed": 0, "skipped": 0, "planning": int(job.planning), "finalizing": 0,
            "open": 0, "fence": 0, "created_at": now_iso(), "created_ts": repr(time.time()),
            "progress_ms": now_ms(),
        }
        if job.retention_s is not None:
            fields["retention_s"] = job.retention_s
        if job.steps is not None:
            fields.update(steps_total=job.steps, steps_done=0)
        if job.model_pin is not None:
            fields["model_pin"] = json.dumps(job.model_pin.to_json())
        pipe.hset(job_key(job.id), mapping=fields)
        for start in range(0, len(job.inputs), 1000):
            batch = job.inputs[start:start + 1000]
            pipe.rpush(job_sub(job.id, "inputs"), *(json.dumps(i.to_json()) for i in batch))
        pipe.sadd(ACTIVE_JOBS, job.id)
        pipe.hincrby(STATS, "jobs:" + JobStatus.QUEUED.value, 1)
        pipe.incrby(tenant_key(job.tenant, "queued"), total)

    # --- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(job_key(job_id))
        if not raw or "status" not in raw:
            return None
        extra: dict[str, Any] = {}
        if "steps_total" in raw:  # a visualization counts steps, its items in `items`
            extra = {"total": int(raw["steps_total"]), "done": int(raw.get("steps_done", 0)),
                     "items": {"total": int(raw["total"]), "done": int(raw.get("done", 0)),
                               "failed": int(raw.get("failed", 0))}}
        if int(raw.get("projections_due", 0)):
            extra["projections"] = {"done": int(raw.get("projections_done", 0)),
                                    "due": int(raw["projections_due"])}
        return Job(
            id=job_id,
            tenant=raw["tenant"],
            kind=raw.get("kind", "attribution"),
            status=JobStatus(raw["status"]),
            spec=json.loads(raw["spec"]),
            layout=raw.get("layout", "items"),
            total=int(raw["total"]),
            done=int(raw.get("done", 0)),
            failed=int(raw.get("failed", 0)),
            skipped=int(raw.get("skipped", 0)),
            planning=_flag(raw, "planning"),
            finalizing=_flag(raw, "finalizing"),
            final_status=JobStatus(raw["final_status"]) if raw.get("final_status") else None,
            created_at=raw["created_at"],
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            error=raw.get("error"),
            first_error=raw.get("first_error"),
            created_ts=float(raw["created_ts"]),
            progress_ms=int(raw.get("progress_ms", 0)),
            expires_at=float(raw["expires_at"]) if raw.get("expires_at") else None,
            extra_progress=extra,
            plan_chunk=int(raw.get("plan_chunk", 0)),
            phase=int(raw.get("phase", 0)),
            notify_attempts=tuple(json.loads(raw["notify_attempts"]))
            if raw.get("notify_attempts") else (),
            model_pin=ModelPin.from_json(json.loads(raw["model_pin"]))
            if raw.get("model_pin") else None,
        )

    def status(self, job_id: str) -> JobStatus | None:
        raw = self.redis.hget(job_key(job_id), "status")
        return JobStatus(raw) if raw else None

    def stopping(self, job_id: str) -> bool:
        """Whether a job is finalizing or final: its chunks stop taking batches."""
        finalizing, status = self.redis.hmget(job_key(job_id), "finalizing", "status")
        return finalizing == "1" or status is None or JobStatus(status).is_final

    def open_chunks(self, job_id: str) -> int:
        """Chunks of the job not done yet (0 once its phase is complete)."""
        return int(self.redis.hget(job_key(job_id), "open") or 0)

    def active(self) -> list[str]:
        return sorted(self.redis.smembers(ACTIVE_JOBS))

    # --- inputs and items (upload and inline jobs) --------------------------------------------

    def input_range(self, job_id: str, start: int, stop: int) -> list[InputSource]:
        """Inputs `start` to `stop` (exclusive) of an upload or inline job."""
        if stop <= start:
            return []
        raw = self.redis.lrange(job_sub(job_id, "inputs"), start, stop - 1)
        return [InputSource.from_json(json.loads(r)) for r in raw]

    def record_item(self, job_id: str, record: ItemRecord, key: str, token: int) -> bool:
        """Write an item's record under the lease `key`/`token`; False if fenced. Writing it
        again overwrites and never counts it twice."""
        return int(self._record_item(
            keys=[job_key(job_id), job_sub(job_id, "items"), job_sub(job_id, "done"),
                  job_sub(job_id, "failed"), key],
            args=[record.index, json.dumps(record.to_json()), int(record.ok), token,
                  record.error or "", now_ms(), PREFIX],
        )) == 1

    def item_progress(self, job_id: str, record: ItemRecord, key: str, token: int) -> bool:
        """Show an unfinished item's progress (its record, not yet counted); False if fenced."""
        return int(self._progress_item(
            keys=[job_sub(job_id, "items"), job_sub(job_id, "done"), job_sub(job_id, "failed"),
                  key],
            args=[record.index, json.dumps(record.to_json()), token],
        )) >= 0

    def items(self, job_id: str, indices: list[int]) -> list[ItemRecord | None]:
        if not indices:
            return []
        raw = self.redis.hmget(job_sub(job_id, "items"), [str(i) for i in indices])
        return [ItemRecord.from_json(json.loads(r)) if r else None for r in raw]

    def unfinished(self, job_id: str, indices: list[int]) -> list[int]:
        """Those of `indices` not recorded yet (one round trip, whatever the job's size)."""
        if not indices:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.smismember(job_sub(job_id, "done"), indices)
        pipe.smismember(job_sub(job_id, "failed"), indices)
        done, failed = pipe.execute()
        return [i for i, d, f in zip(indices, done, failed, strict=True) if not (d or f)]

    def bump_attempts(self, job_id: str, indices: Iterable[int]) -> None:
        """Count one more attempt at each item (a batch starts).

        A batch starting is progress: a data-set chunk publishes nothing until its run
        commits, and without this a long run would look stalled to the reconciler
        (`SALIENCY_STALL_S`) and be fenced. Attempts beyond an item's first (its worker was
        lost, or its run fenced) are counted in the job's `reruns`: the work done twice,
        which at-least-once allows and operators watch."""
        pipe = self.redis.pipeline(transaction=True)
        for i in indices:
            pipe.hincrby(job_sub(job_id, "attempts"), str(i), 1)
        pipe.hset(job_key(job_id), "progress_ms", now_ms())
        counts = pipe.execute()[:-1]
        again = sum(1 for n in counts if n > 1)
        if again:
            self.redis.hincrby(job_key(job_id), "reruns", again)

    # --- progress of other phases -------------------------------------------------------------

    def set_fields(self, job_id: str, **fields: Any) -> None:
        self.redis.hset(job_key(job_id), mapping=fields)

    def add_progress(self, job_id: str, name: str, n: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(job_key(job_id), name, n)
        pipe.hset(job_key(job_id), "progress_ms", now_ms())
        pipe.execute()

    def end_planning(self, job: Job, total: int, skipped: int, quota: int,
                     error: str, fail: bool = False) -> bool:
        """A data-set job's planning is over: `total` items, counted among its tenant's queued
        items. If that takes the tenant past `quota` (or with `fail`), the job is marked
        finalizing towards `failed` with `error`, at once: True if it was."""
        return bool(self._end_planning(
            keys=[job_key(job.id), tenant_key(job.tenant, "queued")],
            args=[total, skipped, quota, error, int(fail)]))

    # --- ending -------------------------------------------------------------------------------

    def request_final(self, job_id: str, status: JobStatus, error: str | None = None,
                      allowed_from: tuple[JobStatus, ...] = (JobStatus.QUEUED,
                                                             JobStatus.RUNNING)) -> bool:
        """Mark a job `finalizing` towards `status`; True if this call did (first one wins)."""
        return bool(self._request_final(keys=[job_key(job_id)], args=[
            status.value, error or "", *(s.value for s in allowed_from)]))

    def finish(self, job_id: str, status: JobStatus, retention_s: int,
               notify_event: str | None = None, notify_after_s: float = 0) -> bool:
        """Set the final status once the finalizer has written everything. With
        `notify_event`, the job's first webhook delivery becomes due in `notify_after_s`, in
        the same transaction: the finalizer sends it at once, and if it dies before it can,
        the reconciler sends it then (at least once)."""
        webhook = f"{job_id}:{notify_event}:0" if notify_event else ""
        finished = bool(self._finish(
            keys=[job_key(job_id), STATS, ACTIVE_JOBS, WEBHOOKS_DUE],
            args=[status.value, now_iso(), time.time() + retention_s, PREFIX, webhook,
                  time.time() + notify_after_s],
        ))
        if finished:
            created = self.redis.hget(job_key(job_id), "created_ts")
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

    def compact(self, job_id: str) -> None:
        """Drop what a final job no longer needs: its ledger and attempt counts."""
        pipe = self.redis.pipeline(transaction=False)
        for what in ("attempts", "inflight", "losses", "cstop", "cstate", "cattempts", "clost",
                     "csent", "cworker"):
            pipe.delete(job_sub(job_id, what))
        pipe.execute()

    def expired(self, now: float, limit: int = 100) -> list[str]:
        return self.redis.zrangebyscore(EXPIRY, 0, now, start=0, num=limit)

    def delete(self, job_id: str, tenant: str, tombstone_ttl_s: int) -> None:
        """Forget an expired job, leaving a tombstone (`410 expired`) for a while."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(tombstone_key(job_id), tenant, ex=tombstone_ttl_s)
        pipe.delete(job_key(job_id), *(job_sub(job_id, what) for what in SUBKEYS))
        pipe.zrem(EXPIRY, job_id)
        pipe.srem(ACTIVE_JOBS, job_id)
        pipe.execute()

    def tombstone(self, job_id: str) -> str | None:
        """The tenant of an expired job whose tombstone is still kept, else None."""
        return self.redis.get(tombstone_key(job_id))

    # --- the job's control lease (planner, next phase, finalizer) -----------------------------

    def take_control(self, job_id: str, lease_s: int) -> int | None:
        """The job-level lease for its planner or finalizer: a token, or None if held."""
        token = int(self.redis.hincrby(job_key(job_id), "fence", 1))
        taken = self._take(keys=[lease_key(job_id, CONTROL)], args=[token, lease_s * 1000])
        return token if taken else None

    def release_control(self, job_id: str, token: int) -> None:
        key = lease_key(job_id, CONTROL)
        if self.redis.get(key) == str(token):
            self.redis.delete(key)

    def control_held(self, job_id: str) -> bool:
        return bool(self.redis.exists(lease_key(job_id, CONTROL)))

    # --- the finalizer's checkpoint (the steps it has written) ------------------------------

    def checkpoint(self, job_id: str) -> dict[str, str]:
        """The steps a job's finalizers have recorded so far (field -> value)."""
        return self.redis.hgetall(job_sub(job_id, "final"))

    def record_step(self, job_id: str, token: int, steps: dict[str, str]) -> bool:
        """Record finalizer steps under the control lease `token`; False if it was taken over."""
        args: list[Any] = [token]
        for name, value in steps.items():
            args += [name, value]
        return bool(self._checkpoint(keys=[lease_key(job_id, CONTROL), job_sub(job_id, "final")],
                                     args=args))

    def clear_checkpoint(self, job_id: str) -> None:
        self.redis.delete(job_sub(job_id, "final"))
