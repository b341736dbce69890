"""The chunk ledger: every chunk of a job, its state, and the lease of the worker running it.

A job's items are split into chunks `[start, stop)`. A chunk is `planned` (a data-set job
still being planned), `ready` (waiting in its tenant's list, `shared.fairqueue`), `sent`
(its task is in Celery's queue), `running` (a worker holds its lease) or `done`. A worker
takes a chunk with `acquire`, which gives it a fencing token and a lease of
`SALIENCY_LEASE_S` that a heartbeat renews; every result it writes is checked against the
token, so a worker whose lease was taken over (killed, stopped, cut off) cannot publish.
`commit` ends a run: the items it did are done, and the rest of the chunk, if any, becomes a
new ready chunk (a split), so a chunk can stop at any batch — its time budget spent, or its
worker yielding to another tenant — and continue elsewhere. The reconciler
(`worker.reconciler`) makes chunks whose lease expired, or whose task vanished, ready again.

The scripts never parse JSON: a chunk is a few plain hash fields, and a committed segment's
description (`cseg`, written and read by Python) is stored as an opaque string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from shared.fairqueue import INFLIGHT, PUSH_READY_LUA, chunk_ref
from shared.redisio import PREFIX, job_key, job_sub, lease_key, now_iso, now_ms

# ARGV: prefix, job, start, lease ms, now ms, worker, now iso
_ACQUIRE = """
local P, job, start = ARGV[1], ARGV[2], ARGV[3]
local jkey = P .. 'job:' .. job
local ref = job .. ':' .. start
local state = redis.call('HGET', jkey .. ':cstate', start)
if not state or state == 'done' or state == 'planned' then
  redis.call('ZREM', P .. 'dispatch:inflight', ref)
  return {0, state or 'missing'}
end
local lease = P .. 'lease:' .. job .. ':' .. start
if redis.call('EXISTS', lease) == 1 then return {0, 'leased'} end
local status = redis.call('HGET', jkey, 'status')
if redis.call('HGET', jkey, 'finalizing') == '1' or (status ~= 'queued' and status ~= 'running')
then
  redis.call('ZREM', P .. 'dispatch:inflight', ref)
  return {0, 'final'}
end
local token = redis.call('HINCRBY', jkey, 'fence', 1)
redis.call('SET', lease, token, 'PX', ARGV[4])
local tenant = redis.call('HGET', jkey, 'tenant')
if state == 'ready' then
  local list = P .. 'dispatch:ready:' .. tenant
  redis.call('LREM', list, 1, ref)
  if redis.call('LLEN', list) == 0 then redis.call('ZREM', P .. 'dispatch:tenants', tenant) end
end
redis.call('HSET', jkey .. ':cstate', start, 'running')
redis.call('HSET', jkey .. ':cworker', start, ARGV[6])
redis.call('ZADD', P .. 'dispatch:inflight', ARGV[5], ref)
redis.call('HSET', jkey, 'progress_ms', ARGV[5])
local attempts = redis.call('HINCRBY', jkey .. ':cattempts', start, 1)
if status == 'queued' then
  redis.call('HSET', jkey, 'status', 'running', 'started_at', ARGV[7])
  redis.call('HINCRBY', P .. 'stats', 'jobs:queued', -1)
  redis.call('HINCRBY', P .. 'stats', 'jobs:running', 1)
end
return {token, redis.call('HGET', jkey .. ':cstop', start), attempts,
        redis.call('HGET', jkey .. ':csent', start) or '0'}
"""

# KEYS: lease; ARGV: token, lease ms. Extend the lease if the caller still holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# ARGV: prefix, job, start, token, upto, segment, done n, failed n, now ms, to back (1/0),
# the segment's first error ('' if none). -1: fenced; 1: committed; 2: committed, and it was
# the job's last open chunk.
_COMMIT = PUSH_READY_LUA + """
local P, job, start = ARGV[1], ARGV[2], ARGV[3]
local lease = P .. 'lease:' .. job .. ':' .. start
if redis.call('GET', lease) ~= ARGV[4] then return -1 end
local jkey = P .. 'job:' .. job
local tenant = redis.call('HGET', jkey, 'tenant')
local stop, upto = tonumber(redis.call('HGET', jkey .. ':cstop', start)), tonumber(ARGV[5])
local to_back = ARGV[10] == '1'
redis.call('DEL', lease)
redis.call('ZREM', P .. 'dispatch:inflight', job .. ':' .. start)
if upto <= tonumber(start) then
  redis.call('HSET', jkey .. ':cstate', start, 'ready')
  push_ready(P, tenant, job .. ':' .. start, true, to_back)
  return 1
end
redis.call('HSET', jkey .. ':cstate', start, 'done')
if ARGV[6] ~= '' then redis.call('HSET', jkey .. ':cseg', start, ARGV[6]) end
local done, failed = tonumber(ARGV[7]), tonumber(ARGV[8])
if done + failed > 0 then
  redis.call('HINCRBY', jkey, 'done', done)
  redis.call('HINCRBY', jkey, 'failed', failed)
  redis.call('HINCRBY', P .. 'stats', 'items_done', done)
  redis.call('HINCRBY', P .. 'stats', 'items_failed', failed)
  redis.call('INCRBY', P .. 'tenant:' .. tenant .. ':queued', -(done + failed))
  redis.call('HSET', jkey, 'progress_ms', ARGV[9])
end
if failed > 0 and ARGV[11] ~= '' then redis.call('HSETNX', jkey, 'first_error', ARGV[11]) end
if upto < stop then
  redis.call('HSET', jkey .. ':cstop', start, upto)
  redis.call('HSET', jkey .. ':cstop', upto, stop)
  redis.call('HSET', jkey .. ':cstate', upto, 'ready')
  push_ready(P, tenant, job .. ':' .. upto, true, to_back)
  return 1
end
local open = redis.call('HINCRBY', jkey, 'open', -1)
if open <= 0 and redis.call('HGET', jkey, 'planning') ~= '1' then return 2 end
return 1
"""

# KEYS: lease, inflight; ARGV: token, ref. A run that stops without committing (its job is
# being finalized) gives back its lease and its place in the window.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# ARGV: prefix, job, start, expected state ('running' or 'sent'), sent before (ms), silent
# (ms). Make a chunk ready again whose lease expired or has at most `silent` ms left (its
# holder stopped renewing it: the lease is revoked), or whose task vanished.
_REQUEUE = PUSH_READY_LUA + """
local P, job, start = ARGV[1], ARGV[2], ARGV[3]
local jkey = P .. 'job:' .. job
if redis.call('HGET', jkey .. ':cstate', start) ~= ARGV[4] then return 0 end
if redis.call('HGET', jkey, 'finalizing') == '1' then return 0 end
if ARGV[4] == 'running' then
  local lease = P .. 'lease:' .. job .. ':' .. start
  if redis.call('PTTL', lease) > tonumber(ARGV[6]) then return 0 end
  redis.call('DEL', lease)
  redis.call('HINCRBY', jkey .. ':clost', start, 1)
else
  local sent = tonumber(redis.call('HGET', jkey .. ':csent', start) or '0')
  if sent > tonumber(ARGV[5]) then return 0 end
end
redis.call('HSET', jkey .. ':cstate', start, 'ready')
redis.call('ZREM', P .. 'dispatch:inflight', job .. ':' .. start)
push_ready(P, redis.call('HGET', jkey, 'tenant'), job .. ':' .. start, true, false)
return 1
"""

# ARGV: prefix, job. Make every planned chunk ready, in order; returns how many.
_ACTIVATE = PUSH_READY_LUA + """
local P, job = ARGV[1], ARGV[2]
local jkey = P .. 'job:' .. job
local tenant = redis.call('HGET', jkey, 'tenant')
local starts = {}
local all = redis.call('HGETALL', jkey .. ':cstate')
for i = 1, #all, 2 do
  if all[i + 1] == 'planned' then table.insert(starts, tonumber(all[i])) end
end
table.sort(starts)
for _, s in ipairs(starts) do
  redis.call('HSET', jkey .. ':cstate', s, 'ready')
  push_ready(P, tenant, job .. ':' .. s, false, false)
end
return #starts
"""


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a chunk: its fencing token and the chunk's current end."""

    job_id: str
    start: int
    stop: int
    token: int
    attempts: int
    sent_ms: int = 0  # when the chunk's task was sent (0: not through the fair queue)

    @property
    def key(self) -> str:
        return lease_key(self.job_id, str(self.start))


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
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._commit = client.register_script(_COMMIT)
        self._requeue = client.register_script(_REQUEUE)
        self._release = client.register_script(_RELEASE)
        self._activate = client.register_script(_ACTIVATE)

    # --- creating ----------------------------------------------------------------------------

    def add(self, pipe: Any, job_id: str, ranges: list[tuple[int, int]], state: str) -> None:
        """Add chunks (in a pipeline the caller executes); `state` is `planned` or `ready`."""
        if not ranges:
            return
        pipe.hset(job_sub(job_id, "cstop"), mapping={str(a): b for a, b in ranges})
        pipe.hset(job_sub(job_id, "cstate"), mapping={str(a): state for a, _ in ranges})
        pipe.hincrby(job_key(job_id), "open", len(ranges))

    def activate(self, job_id: str) -> int:
        """Make every planned chunk of a job ready (planning has ended)."""
        return int(self._activate(args=[PREFIX, job_id]))

    def reset(self, job_id: str, keep_segments: bool = False) -> None:
        """Forget a job's chunks: a planner starting again from scratch, or a job moving to
        its next phase (which keeps the segments the first one committed)."""
        pipe = self.redis.pipeline(transaction=True)
        for what in ("cstop", "cstate", "cattempts", "clost", "csent", "cworker",
                     *(() if keep_segments else ("cseg",))):
            pipe.delete(job_sub(job_id, what))
        pipe.hset(job_key(job_id), "open", 0)
        pipe.execute()

    # --- running ------------------------------------------------------------------------------

    def acquire(self, job_id: str, start: int, worker: str, lease_s: int) -> Lease | str:
        """Take the chunk for this worker; a `Lease`, or why not (`done`, `leased`, `final`)."""
        out = self._acquire(args=[PREFIX, job_id, start, lease_s * 1000, now_ms(), worker,
                                  now_iso()])
        if int(out[0]) == 0:
            return str(out[1])
        return Lease(job_id, start, int(out[1]), int(out[0]), int(out[2]), int(out[3]))

    def renew(self, key: str, token: int, lease_s: int) -> bool:
        """Extend a lease the caller still holds; False if it was taken over."""
        return bool(self._renew(keys=[key], args=[token, lease_s * 1000]))

    def holds(self, lease: Lease) -> bool:
        return self.redis.get(lease.key) == str(lease.token)

    def commit(self, lease: Lease, upto: int, *, segment: Segment | None = None,
               done: int = 0, failed: int = 0, first_error: str | None = None,
               to_back: bool = False) -> int:
        """End a run: items `[start, upto)` are done; the rest becomes a ready chunk.

        `done`/`failed` count the items of a segment (data-set jobs; upload jobs count each
        item as it is recorded), and `first_error` is its first failed item's error (the job
        keeps the first one committed). Returns -1 if fenced, 2 if this was the job's last
        open chunk (the caller then starts the job's next phase), else 1.
        """
        return int(self._commit(args=[
            PREFIX, lease.job_id, lease.start, lease.token, upto,
            segment.to_json() if segment else "", done, failed, now_ms(), int(to_back),
            first_error or "",
        ]))

    def release(self, lease: Lease) -> None:
        """Give back a lease without committing (the job is being finalized)."""
        self._release(keys=[lease.key, INFLIGHT], args=[lease.token,
                                                        chunk_ref(lease.job_id, lease.start)])

    def requeue(self, job_id: str, start: int, state: str, sent_before_ms: int = 0,
                silent_ms: int = 0) -> bool:
        """Make a chunk ready again if it is `running` with its lease expired or with at most
        `silent_ms` left of it (it was not renewed for that long: its holder is presumed
        lost, and the lease is revoked), or if it is `sent` since before `sent_before_ms`."""
        return bool(self._requeue(args=[PREFIX, job_id, start, state, sent_before_ms,
                                        silent_ms]))

    def fence_all(self, job_id: str) -> None:
        """Revoke every chunk lease of a job, so no running chunk can publish any more, and
        free the job's places in the window."""
        starts = self.redis.hkeys(job_sub(job_id, "cstate"))
        if starts:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(*(lease_key(job_id, s) for s in starts))
            pipe.zrem(INFLIGHT, *(chunk_ref(job_id, int(s)) for s in starts))
            pipe.execute()

    # --- reading ------------------------------------------------------------------------------

    def states(self, job_id: str) -> list[ChunkState]:
        """Every chunk of a job, in item order."""
        pipe = self.redis.pipeline(transaction=False)
        for what in ("cstop", "cstate", "cattempts", "clost", "csent", "cworker", "cseg"):
            pipe.hgetall(job_sub(job_id, what))
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
        raw = self.redis.hvals(job_sub(job_id, "cseg"))
        return sorted((Segment.from_json(r) for r in raw), key=lambda s: s.start)
