"""Job state, items, progress, idempotency keys and model records in Redis.

Every key lives under `saliency:`. Progress is the size of two sets of item indices (done,
failed), so recording an item twice — a redelivered task — never counts it twice. Status
changes go through one Lua script that checks the current status, so a cancel and a finish
cannot both win, and the jobs-by-status gauges move exactly once per change. A job runs as
chunks on many workers at once; the one that records the last item finishes the job, through a
script that counts the items and changes the status in one step, so two chunks finishing
together finish the job exactly once and neither can miss it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from shared.status import JobStatus

PREFIX = "saliency:"
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STATS = PREFIX + "stats"
LATENCY = PREFIX + "stats:job_latency"
BUILTIN_TENANT = "_builtin"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def _sub(job_id: str, what: str) -> str:
    return f"{PREFIX}job:{job_id}:{what}"


def models_key(tenant: str) -> str:
    return f"{PREFIX}models:{tenant}"


def idempotency_key(tenant: str, key: str) -> str:
    return f"{PREFIX}idem:{tenant}:{key}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
local allowed = false
for i = 5, #ARGV do if ARGV[i] == cur then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
redis.call('HINCRBY', KEYS[2], 'jobs:' .. cur, -1)
redis.call('HINCRBY', KEYS[2], 'jobs:' .. ARGV[1], 1)
return 1
"""

_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return '' end
local failed = redis.call('SCARD', KEYS[3])
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if redis.call('SCARD', KEYS[2]) + failed < total then return '' end
local to = 'succeeded'
if total > 0 and failed == total then
  to = 'failed'
  local first, why = redis.call('HGET', KEYS[5], '0'), 'unknown'
  if first then
    local ok, item = pcall(cjson.decode, first)
    if ok and type(item['error']) == 'string' then why = item['error'] end
  end
  redis.call('HSET', KEYS[1], 'error', ARGV[2] .. why)
end
redis.call('HSET', KEYS[1], 'status', to, 'finished_at', ARGV[1])
redis.call('HINCRBY', KEYS[4], 'jobs:running', -1)
redis.call('HINCRBY', KEYS[4], 'jobs:' .. to, 1)
return to
"""

_RECORD_ITEM = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local into, other, counter = KEYS[2], KEYS[3], 'items_done'
if ARGV[3] ~= '1' then into, other, counter = KEYS[3], KEYS[2], 'items_failed' end
redis.call('SREM', other, ARGV[1])
if redis.call('SADD', into, ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[4], counter, 1) end
return 1
"""


@dataclass(frozen=True)
class Job:
    """A job as stored; `to_json` is the API's representation."""

    id: str
    tenant: str
    status: JobStatus
    spec: dict[str, Any]
    total: int
    done: int
    failed: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    created_ts: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "model": self.spec.get("model"),
            "methods": self.spec.get("methods"),
            "target": self.spec.get("target"),
            "progress": {"total": self.total, "done": self.done, "failed": self.failed},
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


class JobStore:
    """All Redis reads and writes of the service, shared by the API and the worker."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(_TRANSITION)
        self._record_item = client.register_script(_RECORD_ITEM)
        self._finish = client.register_script(_FINISH)

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    # --- jobs -------------------------------------------------------------------------------

    def create_job(
        self, job_id: str, tenant: str, spec: dict[str, Any], inputs: list[dict[str, Any]]
    ) -> None:
        """Store a queued job and its input descriptors (storage keys, URIs, names)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            job_key(job_id),
            mapping={
                "tenant": tenant,
                "status": JobStatus.QUEUED.value,
                "spec": json.dumps(spec),
                "total": len(inputs),
                "created_at": now_iso(),
                "created_ts": repr(time.time()),
            },
        )
        for start in range(0, len(inputs), 1000):
            chunk = inputs[start : start + 1000]
            pipe.rpush(_sub(job_id, "inputs"), *(json.dumps(i) for i in chunk))
        pipe.hincrby(STATS, "jobs:" + JobStatus.QUEUED.value, 1)
        pipe.execute()

    def get_job(self, job_id: str) -> Job | None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(job_key(job_id))
        pipe.scard(_sub(job_id, "done"))
        pipe.scard(_sub(job_id, "failed"))
        raw, done, failed = pipe.execute()
        if not raw:
            return None
        return Job(
            id=job_id,
            tenant=raw["tenant"],
            status=JobStatus(raw["status"]),
            spec=json.loads(raw["spec"]),
            total=int(raw["total"]),
            done=done,
            failed=failed,
            created_at=raw["created_at"],
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            error=raw.get("error"),
            created_ts=float(raw["created_ts"]),
        )

    def status(self, job_id: str) -> JobStatus | None:
        raw = self.redis.hget(job_key(job_id), "status")
        return JobStatus(raw) if raw else None

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        allowed_from: tuple[JobStatus, ...],
        error: str | None = None,
    ) -> bool:
        """Move a job to `to` if it is in one of `allowed_from`; True if this call moved it."""
        stamp = {JobStatus.RUNNING: "started_at"}.get(to, "finished_at" if to.is_final else "")
        moved = self._transition(
            keys=[job_key(job_id), STATS],
            args=[to.value, stamp, now_iso(), error or "", *(s.value for s in allowed_from)],
        )
        if moved and to.is_final:
            created = self.redis.hget(job_key(job_id), "created_ts")
            if created:
                self._observe_latency(time.time() - float(created))
        return bool(moved)

    def finish_if_complete(self, job_id: str) -> JobStatus | None:
        """Finish a running job whose every item is recorded: `succeeded`, or `failed` if every
        item failed. Returns the new status if this call finished it, else None."""
        to = self._finish(
            keys=[job_key(job_id), _sub(job_id, "done"), _sub(job_id, "failed"), STATS,
                  _sub(job_id, "items")],
            args=[now_iso(), "every item failed; the first: "],
        )
        if not to:
            return None
        created = self.redis.hget(job_key(job_id), "created_ts")
        if created:
            self._observe_latency(time.time() - float(created))
        return JobStatus(to)

    def _observe_latency(self, seconds: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for le in LATENCY_BUCKETS_S:
            if seconds <= le:
                pipe.hincrby(LATENCY, str(le), 1)
        pipe.hincrby(LATENCY, "+Inf", 1)
        pipe.hincrbyfloat(LATENCY, "sum", seconds)
        pipe.execute()

    # --- inputs and items -------------------------------------------------------------------

    def inputs(self, job_id: str) -> list[dict[str, Any]]:
        return self.input_range(job_id, 0, -1)

    def finished_indices(self, job_id: str) -> set[int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(_sub(job_id, "done"))
        pipe.smembers(_sub(job_id, "failed"))
        done, failed = pipe.execute()
        return {int(i) for i in done | failed}

    def unfinished(self, job_id: str, indices: list[int]) -> list[int]:
        """Those of `indices` not recorded yet (one round trip, whatever the job's size)."""
        if not indices:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.smismember(_sub(job_id, "done"), indices)
        pipe.smismember(_sub(job_id, "failed"), indices)
        done, failed = pipe.execute()
        return [i for i, d, f in zip(indices, done, failed, strict=True) if not (d or f)]

    def record_item(self, job_id: str, index: int, item: dict[str, Any], ok: bool) -> None:
        """Write an item's result; writing it again overwrites and never counts it twice."""
        self._record_item(
            keys=[_sub(job_id, "items"), _sub(job_id, "done"), _sub(job_id, "failed"), STATS],
            args=[str(index), json.dumps(item), "1" if ok else "0"],
        )

    def items(self, job_id: str, indices: list[int]) -> list[dict[str, Any] | None]:
        if not indices:
            return []
        raw = self.redis.hmget(_sub(job_id, "items"), [str(i) for i in indices])
        return [json.loads(r) if r else None for r in raw]

    def input_range(self, job_id: str, start: int, stop: int) -> list[dict[str, Any]]:
        """Input descriptors `start` to `stop` (exclusive; -1: to the end)."""
        if stop != -1 and stop <= start:
            return []
        end = -1 if stop == -1 else stop - 1
        return [json.loads(r) for r in self.redis.lrange(_sub(job_id, "inputs"), start, end)]

    def bump_attempts(self, job_id: str, indices: list[int]) -> list[int]:
        """Count one more attempt at each item; returns the new counts."""
        pipe = self.redis.pipeline(transaction=True)
        for i in indices:
            pipe.hincrby(_sub(job_id, "attempts"), str(i), 1)
        return pipe.execute()

    def begin_run(self, job_id: str, start: int) -> int:
        """Count a run of the chunk starting at `start` that has not ended cleanly yet; returns
        how many there are. Counted per chunk: chunks running side by side are not lost runs."""
        return int(self.redis.hincrby(_sub(job_id, "runs"), str(start), 1))

    def end_run(self, job_id: str, start: int) -> None:
        self.redis.hincrby(_sub(job_id, "runs"), str(start), -1)

    # --- idempotency ------------------------------------------------------------------------

    def reserve_idempotency(self, tenant: str, key: str, job_id: str, ttl_s: int) -> str | None:
        """Claim `key` for `job_id`; returns the job id that already holds it, if any."""
        name = idempotency_key(tenant, key)
        if self.redis.set(name, job_id, nx=True, ex=ttl_s):
            return None
        return self.redis.get(name) or None

    def release_idempotency(self, tenant: str, key: str) -> None:
        self.redis.delete(idempotency_key(tenant, key))

    # --- models -----------------------------------------------------------------------------

    def put_model(self, tenant: str, name: str, record: dict[str, Any], *, replace: bool) -> bool:
        """Store a model record; without `replace`, False if the name is taken."""
        if replace:
            self.redis.hset(models_key(tenant), name, json.dumps(record))
            return True
        return bool(self.redis.hsetnx(models_key(tenant), name, json.dumps(record)))

    def get_model(self, tenant: str, name: str) -> dict[str, Any] | None:
        """The tenant's model of that name, else a built-in one, else None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(models_key(tenant), name)
        pipe.hget(models_key(BUILTIN_TENANT), name)
        own, builtin = pipe.execute()
        raw = own or builtin
        return json.loads(raw) if raw else None

    def list_models(self, tenant: str) -> list[dict[str, Any]]:
        merged = {**self.redis.hgetall(models_key(BUILTIN_TENANT)), **self.redis.hgetall(
            models_key(tenant))}
        return [json.loads(merged[name]) for name in sorted(merged)]

    def delete_model(self, tenant: str, name: str) -> dict[str, Any] | None:
        raw = self.redis.hget(models_key(tenant), name)
        if raw:
            self.redis.hdel(models_key(tenant), name)
        return json.loads(raw) if raw else None

    # --- metrics ----------------------------------------------------------------------------

    def stats(self) -> tuple[dict[str, str], dict[str, str]]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(STATS)
        pipe.hgetall(LATENCY)
        counters, latency = pipe.execute()
        return counters, latency
