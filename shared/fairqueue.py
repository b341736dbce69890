"""Fair share between tenants: chunks wait in one ready list per tenant, and tasks are sent
to Celery round-robin across tenants, a few at a time.

Celery's queue holds only a window of chunks (twice the live workers), so a small job of
one tenant waits behind at most that window, never behind another tenant's 10,000 items;
the rest waits here, counted by `depth` (what KEDA and `saliency_queue_depth` see). A
running chunk yields its worker between batches while another tenant has a chunk waiting,
ready or already queued behind it, so the small job waits about two batches: the one
running, and the first of the chunk queued ahead of it. A chunk that is in the window or
running is in `INFLIGHT`; the chunk ledger (`shared.chunks`) says which state each chunk is
in, and `pop` only sends chunks that are still `ready`.
"""

from __future__ import annotations

import redis

from shared.redisio import PREFIX, WORKERS, now_ms

READY_TENANTS = PREFIX + "dispatch:tenants"  # tenant -> turn: who is served next
TURN = PREFIX + "dispatch:turn"
INFLIGHT = PREFIX + "dispatch:inflight"  # "job:start" -> ms when sent
MIN_WINDOW = 2
WINDOW_PER_WORKER = 2


def ready_key(tenant: str) -> str:
    return f"{PREFIX}dispatch:ready:{tenant}"


def chunk_ref(job_id: str, start: int) -> str:
    return f"{job_id}:{start}"


def parse_ref(ref: str) -> tuple[str, int]:
    job_id, _, start = ref.partition(":")
    return job_id, int(start)


# Pop up to ARGV[1] - |inflight| chunks, one tenant at a time in turn order. A chunk whose
# state is no longer `ready` (done, or taken by a redelivered task) or whose job is being
# finalized is dropped. ARGV[2]: now (ms); ARGV[3]: the key prefix.
_POP = """
local room = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[2])
local out = {}
local guard = 0
while room > 0 and guard < 10000 do
  guard = guard + 1
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #first == 0 then break end
  local tenant = first[1]
  local list = ARGV[3] .. 'dispatch:ready:' .. tenant
  local ref = redis.call('LPOP', list)
  if not ref or redis.call('LLEN', list) == 0 then
    redis.call('ZREM', KEYS[1], tenant)
  else
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[3]), tenant)
  end
  if ref then
    local sep = string.find(ref, ':', 1, true)
    local job, start = string.sub(ref, 1, sep - 1), string.sub(ref, sep + 1)
    local jkey = ARGV[3] .. 'job:' .. job
    local state = redis.call('HGET', jkey .. ':cstate', start)
    if state == 'ready' and redis.call('HGET', jkey, 'finalizing') ~= '1' then
      redis.call('HSET', jkey .. ':cstate', start, 'sent')
      redis.call('HSET', jkey .. ':csent', start, ARGV[2])
      redis.call('ZADD', KEYS[2], ARGV[2], ref)
      table.insert(out, ref)
      room = room - 1
    end
  end
end
return out
"""

# KEYS: ready tenants, inflight; ARGV: tenant, key prefix. 1 if another tenant has a chunk
# waiting: ready, or sent and still in Celery's queue (sent chunks are in the window, a few
# per worker, so the scan is short).
_OTHERS_WAITING = """
for _, t in ipairs(redis.call('ZRANGE', KEYS[1], 0, 1)) do
  if t ~= ARGV[1] then return 1 end
end
for _, ref in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local sep = string.find(ref, ':', 1, true)
  local jkey = ARGV[2] .. 'job:' .. string.sub(ref, 1, sep - 1)
  if redis.call('HGET', jkey .. ':cstate', string.sub(ref, sep + 1)) == 'sent'
      and redis.call('HGET', jkey, 'tenant') ~= ARGV[1] then
    return 1
  end
end
return 0
"""

# Lua snippet (used by the chunk ledger's scripts): make chunk `ref` of `tenant` ready again.
# `front` puts it first in its tenant's list (a chunk that was already started); `to_back`
# sends the tenant to the back of the line (a chunk that yielded its worker to others). A
# tenant new to the line goes just before the tenant served last.
PUSH_READY_LUA = """
local function push_ready(prefix, tenant, ref, front, to_back)
  local list = prefix .. 'dispatch:ready:' .. tenant
  local tenants, turn = prefix .. 'dispatch:tenants', prefix .. 'dispatch:turn'
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
        self._pop = client.register_script(_POP)
        self._others_waiting = client.register_script(_OTHERS_WAITING)

    def window(self) -> int:
        """How many chunks may be in Celery's queue or running: twice the live workers."""
        alive = self.redis.zcount(WORKERS, now_ms() - 3 * self.lease_s * 1000, "+inf")
        return max(MIN_WINDOW, WINDOW_PER_WORKER * alive)

    def pop(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Take the next chunks to send, round-robin across tenants, up to the window."""
        refs = self._pop(keys=[READY_TENANTS, INFLIGHT, TURN],
                         args=[self.window() if limit is None else limit, now_ms(), PREFIX])
        return [parse_ref(r) for r in refs]

    def others_waiting(self, tenant: str) -> bool:
        """Whether another tenant has chunks waiting (a running chunk then yields its worker):
        in the ready lists, or already sent and still in Celery's queue (without the latter,
        a small job sent behind a big job's next chunk would wait for all of that chunk, not
        one batch of it)."""
        return bool(self._others_waiting(keys=[READY_TENANTS, INFLIGHT], args=[tenant, PREFIX]))

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
