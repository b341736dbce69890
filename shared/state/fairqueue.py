"""Fair share between tenants: chunks wait in one ready list per tenant, and tasks are sent
to Celery round-robin across tenants, a few at a time.

Celery's queue holds only a window of chunks (twice the live workers), so a small job of
one tenant waits behind at most that window, never behind another tenant's 10,000 items;
the rest waits here, counted by `depth` (what KEDA and `saliency_queue_depth` see). A
running chunk yields its worker between batches while another tenant has a chunk waiting,
ready or already queued behind it, so the small job waits about two batches: the one
running, and the first of the chunk queued ahead of it. A chunk that is in the window or
running is in `INFLIGHT`; the chunk ledger (`shared.state.chunks`) says which state each chunk is
in, and `pop` only sends chunks that are still `ready`.
"""

from __future__ import annotations

import redis

from shared.state.jobschema import (
    INFLIGHT,
    READY_TENANTS,
    TURN,
    WORKERS,
    ChunkStatus,
    RecordKeys,
    lua,
    parse_ref,
    ready_key,
)
from shared.state.jobschema import JobField as F
from shared.state.redisio import now_ms

MIN_WINDOW = 2
WINDOW_PER_WORKER = 2
MAX_TURNS = 10_000  # turns one `pop` takes at most

# KEYS: ready tenants, turn, the window (inflight), the tenant's ready list, the job's hash,
# its chunk states, its send times; ARGV: tenant, job id, the list's head when it was read,
# window, now ms, then the states ready, sent. One turn of the tenant first in line: its
# chunk at the head of its list is sent (marked `sent`, put in the window), and the tenant
# goes to the back of the line (or leaves it, its list empty). Chunks of the same job that
# cannot be sent (no longer `ready`: done, or taken by a redelivered task; or their job is
# being finalized) are dropped on the way. {'sent', ref}, {'dropped'}, {'full'} if the
# window is, or {'moved'} if the line or the list changed since they were read.
_SEND_NEXT = lua("""
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {'full'} end
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] ~= ARGV[1]
    or redis.call('LINDEX', KEYS[4], 0) ~= ARGV[3] then
  return {'moved'}
end
local stale = redis.call('HGET', KEYS[5], '$finalizing') == '1'
local prefix = ARGV[2] .. ':'
local sent = nil
while not sent do
  local ref = redis.call('LINDEX', KEYS[4], 0)
  if not ref or string.sub(ref, 1, #prefix) ~= prefix then break end
  redis.call('LPOP', KEYS[4])
  local start = string.sub(ref, #prefix + 1)
  if not stale and redis.call('HGET', KEYS[6], start) == ARGV[6] then
    redis.call('HSET', KEYS[6], start, ARGV[7])
    redis.call('HSET', KEYS[7], start, ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[5], ref)
    sent = ref
  end
end
if redis.call('LLEN', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
end
if sent then return {'sent', sent} end
return {'dropped'}
""")

# KEYS: ready tenants, the tenant's ready list; ARGV: tenant. A tenant whose list is empty
# leaves the line.
_LEAVE_IF_EMPTY = """
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

# Lua snippet (used by the chunk ledger's scripts): make chunk `ref` of `tenant` ready again,
# in the tenant's ready `list`, the line of `tenants` and its `turn` counter (all keys the
# script was given). `front` puts it first in its tenant's list (a chunk that was already
# started); `to_back` sends the tenant to the back of the line (a chunk that yielded its
# worker to others). A tenant new to the line goes just before the tenant served last.
PUSH_READY_LUA = """
local function push_ready(list, tenants, turn, tenant, ref, front, to_back)
  if front then redis.call('LPUSH', list, ref) else redis.call('RPUSH', list, ref) end
  if to_back then
    redis.call('ZADD', tenants, redis.call('INCR', turn), tenant)
  else
    redis.call('ZADD', tenants, 'NX', (tonumber(redis.call('GET', turn)) or 0) - 0.5, tenant)
  end
end
"""


class FairQueue:
    """The ready lists and the window of chunks sent to Celery."""

    def __init__(self, client: redis.Redis, lease_s: int) -> None:
        self.redis = client
        self.lease_s = lease_s
        self._send_next = client.register_script(_SEND_NEXT)
        self._leave_if_empty = client.register_script(_LEAVE_IF_EMPTY)

    def window(self) -> int:
        """How many chunks may be in Celery's queue or running: twice the live workers."""
        alive = self.redis.zcount(WORKERS, now_ms() - 3 * self.lease_s * 1000, "+inf")
        return max(MIN_WINDOW, WINDOW_PER_WORKER * alive)

    def pop(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Take the next chunks to send, round-robin across tenants, up to the window."""
        window = self.window() if limit is None else limit
        sent: list[tuple[str, int]] = []
        if self.redis.zcard(INFLIGHT) >= window:  # full (the script checks again)
            return sent
        for _ in range(MAX_TURNS):
            first = self.redis.zrange(READY_TENANTS, 0, 0)
            if not first:
                break
            tenant = first[0]
            head = self.redis.lindex(ready_key(tenant), 0)
            if head is None:
                self._leave_if_empty(keys=[READY_TENANTS, ready_key(tenant)], args=[tenant])
                continue
            job_id, _ = parse_ref(head)
            keys = RecordKeys(job_id)
            out = self._send_next(
                keys=[READY_TENANTS, TURN, INFLIGHT, ready_key(tenant), keys.hash, keys.cstate,
                      keys.csent],
                args=[tenant, job_id, head, window, now_ms(), ChunkStatus.READY,
                      ChunkStatus.SENT])
            if out[0] == "full":
                break
            if out[0] == "sent":
                sent.append(parse_ref(out[1]))
        return sent

    def others_waiting(self, tenant: str) -> bool:
        """Whether another tenant has chunks waiting (a running chunk then yields its worker):
        in the ready lists, or already sent and still in Celery's queue (without the latter,
        a small job sent behind a big job's next chunk would wait for all of that chunk, not
        one batch of it). Sent chunks are in the window, a few per worker: the scan is short."""
        if any(t != tenant for t in self.redis.zrange(READY_TENANTS, 0, 1)):
            return True
        refs = [parse_ref(ref) for ref in self.redis.zrange(INFLIGHT, 0, -1)]
        if not refs:
            return False
        pipe = self.redis.pipeline(transaction=False)
        for job_id, start in refs:
            keys = RecordKeys(job_id)
            pipe.hget(keys.cstate, str(start))
            pipe.hget(keys.hash, F.TENANT)
        found = pipe.execute()
        return any(state == ChunkStatus.SENT and owner != tenant
                   for state, owner in zip(found[::2], found[1::2], strict=True))

    def collect(self) -> None:
        """Drop window places held by chunks that are neither sent nor running any more."""
        refs = self.redis.zrange(INFLIGHT, 0, -1)
        if not refs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            job_id, start = parse_ref(ref)
            pipe.hget(RecordKeys(job_id).cstate, str(start))
        stale = [ref for ref, state in zip(refs, pipe.execute(), strict=True)
                 if state not in (ChunkStatus.SENT, ChunkStatus.RUNNING)]
        if stale:
            self.redis.zrem(INFLIGHT, *stale)

    def depth(self) -> int:
        """Chunks waiting in every tenant's ready list (not yet sent to Celery)."""
        tenants = self.redis.zrange(READY_TENANTS, 0, -1)
        if not tenants:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for tenant in tenants:
            pipe.llen(ready_key(tenant))
        return int(sum(pipe.execute()))

    def inflight(self) -> dict[str, float]:
        """Chunks sent to Celery (queued or running), with when they were sent (ms)."""
        return {ref: score for ref, score in self.redis.zrange(INFLIGHT, 0, -1, withscores=True)}
