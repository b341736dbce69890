"""The chunk ledger: every chunk of a job, its state, and the lease of the worker running it.

A job's items are split into chunks `[start, stop)`. A chunk is `planned` (a data-set job
still being planned), `ready` (waiting in its tenant's list, `shared.state.fairqueue`), `sent`
(its task is in Celery's queue), `running` (a worker holds its lease) or `done`. A worker
takes a chunk with `acquire`, which gives it a fencing token and a lease of
`SALIENCY_LEASE_S` that a heartbeat renews; every result it writes is checked against the
token, so a worker whose lease was taken over (killed, stopped, cut off) cannot publish.
`commit` ends a run: the items it did are done, and the rest of the chunk, if any, becomes a
new ready chunk (a split), so a chunk can stop at any batch — its time budget spent, or its
worker yielding to another tenant — and continue elsewhere. The reconciler
(`worker.jobs.reconciler`) makes chunks whose lease expired, or whose task vanished, ready again.

The scripts never parse JSON: a chunk is a few plain hash fields, and a committed segment's
description (`cseg`, written and read by Python) is stored as an opaque string. They get
every key as `KEYS` and the states as `ARGV` (`shared.state.jobschema`); the job's tenant, which
names its ready list, is read first (it never changes). What they change in the job's own
hash (its fencing token, its start, its counts, its open chunks) they change in the same step
through the job store's Lua functions (`shared.state.jobscripts.JOB_LUA`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from shared.state.fairqueue import PUSH_READY_LUA
from shared.state.jobschema import (
    INFLIGHT,
    READY_TENANTS,
    STATS,
    TURN,
    ChunkStatus,
    RecordKeys,
    chunk_ref,
    lua,
    queued_key,
    ready_key,
)
from shared.state.jobschema import JobField as F
from shared.state.jobscripts import JOB_LUA
from shared.state.redisio import now_iso, now_ms
from shared.status import JobStatus

# KEYS: chunk stops, chunk states, job; ARGV: state, then start, stop pairs.
_ADD = JOB_LUA + """
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
end
job_open_chunks(KEYS[3], (#ARGV - 1) / 2)
return 1
"""

# KEYS: job, then the ledger's keys to drop. No chunk is open any more.
_RESET = JOB_LUA + """
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
job_reset_chunks(KEYS[1])
return 1
"""

# KEYS: job, chunk states, stops, workers, attempts, send times, the chunk's lease, the window
# (inflight), stats, the tenant's ready list, ready tenants; ARGV: start, lease ms, now ms,
# worker, now iso, the chunk's ref, tenant, then the states planned, ready, running, done and
# the job statuses queued, running. {token, stop, attempts, sent ms} if taken, else {0, its
# state ('' if none)}, {-1} if leased or {-2} if its job is final or finalizing.
_ACQUIRE = JOB_LUA + lua("""
local start, ref, tenant = ARGV[1], ARGV[6], ARGV[7]
local PLANNED, READY, RUNNING, DONE = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local QUEUED, JOB_RUNNING = ARGV[12], ARGV[13]
local state = redis.call('HGET', KEYS[2], start)
if not state or state == DONE or state == PLANNED then
  redis.call('ZREM', KEYS[8], ref)
  return {0, state or ''}
end
if redis.call('EXISTS', KEYS[7]) == 1 then return {-1} end
local status = redis.call('HGET', KEYS[1], '$status')
if redis.call('HGET', KEYS[1], '$finalizing') == '1'
    or (status ~= QUEUED and status ~= JOB_RUNNING) then
  redis.call('ZREM', KEYS[8], ref)
  return {-2}
end
local token = job_next_token(KEYS[1])
redis.call('SET', KEYS[7], token, 'PX', ARGV[2])
if state == READY then
  redis.call('LREM', KEYS[10], 1, ref)
  if redis.call('LLEN', KEYS[10]) == 0 then redis.call('ZREM', KEYS[11], tenant) end
end
redis.call('HSET', KEYS[2], start, RUNNING)
redis.call('HSET', KEYS[4], start, ARGV[4])
redis.call('ZADD', KEYS[8], ARGV[3], ref)
local attempts = redis.call('HINCRBY', KEYS[5], start, 1)
job_chunk_taken(KEYS[1], KEYS[9], status, QUEUED, JOB_RUNNING, ARGV[3], ARGV[5])
return {token, redis.call('HGET', KEYS[3], start), attempts,
        redis.call('HGET', KEYS[6], start) or '0'}
""")

# KEYS: lease; ARGV: token, lease ms. Extend the lease if the caller still holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease, the window, job, chunk stops, states, segments, stats, the tenant's queued
# count, its ready list, ready tenants, turn; ARGV: start, token, upto, segment, done n,
# failed n, now ms, to back (1/0), the segment's first error ('' if none), the chunk's ref,
# the ref of the chunk from `upto`, tenant, then the states ready, done. -1: fenced; 1:
# committed; 2: committed, and it was the job's last open chunk.
_COMMIT = JOB_LUA + PUSH_READY_LUA + lua("""
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
local start, READY, DONE = ARGV[1], ARGV[13], ARGV[14]
local stop, upto = tonumber(redis.call('HGET', KEYS[4], start)), tonumber(ARGV[3])
local to_back = ARGV[8] == '1'
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[10])
if upto <= tonumber(start) then
  redis.call('HSET', KEYS[5], start, READY)
  push_ready(KEYS[9], KEYS[10], KEYS[11], ARGV[12], ARGV[10], true, to_back)
  return 1
end
redis.call('HSET', KEYS[5], start, DONE)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[6], start, ARGV[4]) end
job_items_committed(KEYS[3], KEYS[7], KEYS[8], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7],
                    ARGV[9])
if upto < stop then
  redis.call('HSET', KEYS[4], start, ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[3], stop)
  redis.call('HSET', KEYS[5], ARGV[3], READY)
  push_ready(KEYS[9], KEYS[10], KEYS[11], ARGV[12], ARGV[11], true, to_back)
  return 1
end
local open = job_open_chunks(KEYS[3], -1)
if open <= 0 and redis.call('HGET', KEYS[3], '$planning') ~= '1' then return 2 end
return 1
""")

# KEYS: lease, the window; ARGV: token, ref. A run that stops without committing (its job is
# being finalized) gives back its lease and its place in the window.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: job, chunk states, the chunk's lease, lost runs, send times, the window, the tenant's
# ready list, ready tenants, turn; ARGV: start, expected state ('running' or 'sent'), sent
# before (ms), silent (ms), the chunk's ref, tenant, then the states running, ready. Make a
# chunk ready again whose lease expired or has at most `silent` ms left (its holder stopped
# renewing it: the lease is revoked), or whose task vanished.
_REQUEUE = lua(PUSH_READY_LUA + """
local start = ARGV[1]
if redis.call('HGET', KEYS[2], start) ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[1], '$finalizing') == '1' then return 0 end
if ARGV[2] == ARGV[7] then
  if redis.call('PTTL', KEYS[3]) > tonumber(ARGV[4]) then return 0 end
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', KEYS[4], start, 1)
else
  local sent = tonumber(redis.call('HGET', KEYS[5], start) or '0')
  if sent > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[2], start, ARGV[8])
redis.call('ZREM', KEYS[6], ARGV[5])
push_ready(KEYS[7], KEYS[8], KEYS[9], ARGV[6], ARGV[5], true, false)
return 1
""")

# KEYS: chunk states, the tenant's ready list, ready tenants, turn; ARGV: job id, tenant, then
# the states planned, ready. Make every planned chunk ready, in order (its ref: "job:start");
# returns how many.
_ACTIVATE = PUSH_READY_LUA + """
local starts = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[3] then table.insert(starts, tonumber(all[i])) end
end
table.sort(starts)
for _, s in ipairs(starts) do
  redis.call('HSET', KEYS[1], s, ARGV[4])
  push_ready(KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[1] .. ':' .. s, false, false)
end
return #starts
"""


class Fenced(Exception):
    """A chunk's lease (or a job's control lease) was taken over: this run must not publish
    anything more."""


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a chunk: its fencing token and the chunk's current end."""

    job_id: str
    tenant: str
    start: int
    stop: int
    token: int
    attempts: int
    sent_ms: int = 0  # when the chunk's task was sent (0: not through the fair queue)

    @property
    def key(self) -> str:
        return RecordKeys(self.job_id).lease(self.start)

    @property
    def ref(self) -> str:
        return chunk_ref(self.job_id, self.start)


@dataclass(frozen=True)
class Segment:
    """What a committed run of a chunk wrote besides its item records: a data-set job's shard
    of maps and rows file, and every job's thumbnails of its maps (for clustering)."""

    start: int
    stop: int
    token: int
    shard: str | None
    rows: str | None
    thumbs: str | None = None
    partial: str | None = None  # a multi-phase job's partial result of the segment

    def to_json(self) -> str:
        return json.dumps({"start": self.start, "stop": self.stop, "token": self.token,
                           "shard": self.shard, "rows": self.rows, "thumbs": self.thumbs,
                           "partial": self.partial})

    @classmethod
    def from_json(cls, raw: str) -> Segment:
        d = json.loads(raw)
        return cls(d["start"], d["stop"], d["token"], d.get("shard"), d.get("rows"),
                   d.get("thumbs"), d.get("partial"))


@dataclass(frozen=True)
class ChunkState:
    """One chunk as the reconciler and the finalizer see it."""

    start: int
    stop: int
    state: str
    attempts: int
    lost: int
    sent_ms: int | None
    worker: str | None
    segment: Segment | None


class Chunks:
    """The chunk ledger of every job."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._add = client.register_script(_ADD)
        self._reset = client.register_script(_RESET)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._commit = client.register_script(_COMMIT)
        self._requeue = client.register_script(_REQUEUE)
        self._release = client.register_script(_RELEASE)
        self._activate = client.register_script(_ACTIVATE)

    def _tenant(self, job_id: str) -> str | None:
        return self.redis.hget(RecordKeys(job_id).hash, F.TENANT)

    # --- creating ----------------------------------------------------------------------------

    def add(self, pipe: Any, job_id: str, ranges: list[tuple[int, int]],
            state: ChunkStatus) -> None:
        """Add chunks in the caller's transaction (`pipe`); `state` is `planned` or `ready`."""
        if not ranges:
            return
        keys = RecordKeys(job_id)
        self._add(keys=[keys.cstop, keys.cstate, keys.hash],
                  args=[state, *(n for r in ranges for n in r)], client=pipe)

    def activate(self, job_id: str) -> int:
        """Make every planned chunk of a job ready (planning has ended)."""
        tenant = self._tenant(job_id)
        if tenant is None:
            return 0
        return int(self._activate(
            keys=[RecordKeys(job_id).cstate, ready_key(tenant), READY_TENANTS, TURN],
            args=[job_id, tenant, ChunkStatus.PLANNED, ChunkStatus.READY]))

    def reset(self, job_id: str, keep_segments: bool = False, pipe: Any = None) -> None:
        """Forget a job's chunks: a planner starting again from scratch, or a job moving to
        its next phase (which keeps the segments the first one committed); in the caller's
        transaction if it gives one (`pipe`)."""
        keys = RecordKeys(job_id)
        self._reset(keys=[keys.hash, *keys.ledger, *(() if keep_segments else (keys.cseg,))],
                    client=pipe)

    # --- running ------------------------------------------------------------------------------

    def acquire(self, job_id: str, start: int, worker: str, lease_s: int) -> Lease | str:
        """Take the chunk for this worker; a `Lease`, or why not (`done`, `leased`, `final`,
        `missing`...)."""
        keys, ref = RecordKeys(job_id), chunk_ref(job_id, start)
        tenant = self._tenant(job_id)
        if tenant is None:  # the job is gone
            self.redis.zrem(INFLIGHT, ref)
            return "missing"
        out = self._acquire(
            keys=[keys.hash, keys.cstate, keys.cstop, keys.cworker, keys.cattempts, keys.csent,
                  keys.lease(start), INFLIGHT, STATS, ready_key(tenant), READY_TENANTS],
            args=[start, lease_s * 1000, now_ms(), worker, now_iso(), ref, tenant,
                  ChunkStatus.PLANNED, ChunkStatus.READY, ChunkStatus.RUNNING,
                  ChunkStatus.DONE, JobStatus.QUEUED, JobStatus.RUNNING])
        code = int(out[0])
        if code <= 0:
            return {-1: "leased", -2: "final"}.get(code) or str(out[1]) or "missing"
        return Lease(job_id, tenant, start, int(out[1]), code, int(out[2]), int(out[3]))

    def renew(self, key: str, token: int, lease_s: int) -> bool:
        """Extend a lease the caller still holds; False if it was taken over."""
        return bool(self._renew(keys=[key], args=[token, lease_s * 1000]))

    def commit(self, lease: Lease, upto: int, *, segment: Segment | None = None,
               done: int = 0, failed: int = 0, first_error: str | None = None,
               to_back: bool = False) -> int:
        """End a run: items `[start, upto)` are done; the rest becomes a ready chunk.

        `done`/`failed` count the items of a segment (data-set jobs; upload jobs count each
        item as it is recorded), and `first_error` is its first failed item's error (the job
        keeps the first one committed). Returns -1 if fenced, 2 if this was the job's last
        open chunk (the caller then starts the job's next phase), else 1.
        """
        keys = RecordKeys(lease.job_id)
        return int(self._commit(
            keys=[lease.key, INFLIGHT, keys.hash, keys.cstop, keys.cstate, keys.cseg, STATS,
                  queued_key(lease.tenant), ready_key(lease.tenant), READY_TENANTS, TURN],
            args=[lease.start, lease.token, upto, segment.to_json() if segment else "", done,
                  failed, now_ms(), int(to_back), first_error or "", lease.ref,
                  chunk_ref(lease.job_id, upto), lease.tenant, ChunkStatus.READY,
                  ChunkStatus.DONE]))

    def release(self, lease: Lease) -> None:
        """Give back a lease without committing (the job is being finalized)."""
        self._release(keys=[lease.key, INFLIGHT], args=[lease.token, lease.ref])

    def requeue(self, job_id: str, start: int, state: ChunkStatus, sent_before_ms: int = 0,
                silent_ms: int = 0) -> bool:
        """Make a chunk ready again if it is `running` with its lease expired or with at most
        `silent_ms` left of it (it was not renewed for that long: its holder is presumed
        lost, and the lease is revoked), or if it is `sent` since before `sent_before_ms`."""
        tenant = self._tenant(job_id)
        if tenant is None:
            return False
        keys = RecordKeys(job_id)
        return bool(self._requeue(
            keys=[keys.hash, keys.cstate, keys.lease(start), keys.clost, keys.csent, INFLIGHT,
                  ready_key(tenant), READY_TENANTS, TURN],
            args=[start, state, sent_before_ms, silent_ms, chunk_ref(job_id, start), tenant,
                  ChunkStatus.RUNNING, ChunkStatus.READY]))

    def revoke(self, job_id: str, start: int) -> None:
        """Take chunk `start`'s lease away from its holder (the job stalled): it can no longer
        publish, and the reconciler makes the chunk ready again."""
        self.redis.delete(RecordKeys(job_id).lease(start))

    def fence_all(self, job_id: str) -> None:
        """Revoke every chunk lease of a job, so no running chunk can publish any more, and
        free the job's places in the window."""
        keys = RecordKeys(job_id)
        starts = self.redis.hkeys(keys.cstate)
        if starts:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(*(keys.lease(s) for s in starts))
            pipe.zrem(INFLIGHT, *(chunk_ref(job_id, int(s)) for s in starts))
            pipe.execute()

    # --- reading ------------------------------------------------------------------------------

    def states(self, job_id: str) -> list[ChunkState]:
        """Every chunk of a job, in item order."""
        keys = RecordKeys(job_id)
        pipe = self.redis.pipeline(transaction=False)
        for key in (*keys.ledger, keys.cseg):
            pipe.hgetall(key)
        stop, state, attempts, lost, sent, worker, seg = pipe.execute()
        return [
            ChunkState(
                start=int(s), stop=int(stop[s]), state=state.get(s, "missing"),
                attempts=int(attempts.get(s, 0)), lost=int(lost.get(s, 0)),
                sent_ms=int(sent[s]) if s in sent else None, worker=worker.get(s),
                segment=Segment.from_json(seg[s]) if s in seg else None,
            )
            for s in sorted(stop, key=int)
        ]

    def segments(self, job_id: str) -> list[Segment]:
        """The committed segments of a data-set job, in item order."""
        raw = self.redis.hvals(RecordKeys(job_id).cseg)
        return sorted((Segment.from_json(r) for r in raw), key=lambda s: s.start)
