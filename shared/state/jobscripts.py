"""The Lua scripts that change a job's record, run by `shared.state.jobstore.JobStore`, and the
functions the chunk ledger's scripts call to change the job's hash with the ledger (`JOB_LUA`):
every write of a job's hash from Lua is here. Each names its keys (`KEYS`, built by the
caller from `shared.state.jobschema`) and the states it compares (`ARGV`) in its comment.
"""

from shared.state.jobschema import lua

# Functions for the chunk ledger's scripts (`shared.state.chunks`), which change the job's hash in
# the same step as the ledger: these are all they change of it. Each takes keys its script
# was given.
JOB_LUA = lua("""
local function job_open_chunks(job, n)  -- the current phase gains (n > 0) or ends chunks
  return redis.call('HINCRBY', job, '$open', n)
end
local function job_reset_chunks(job) redis.call('HSET', job, '$open', 0) end
local function job_next_token(job) return redis.call('HINCRBY', job, '$fence', 1) end
-- A chunk of the job is taken: progress; the first one starts the job (`status` queued).
local function job_chunk_taken(job, stats, status, queued, running, now_ms, now_iso)
  redis.call('HSET', job, '$progress_ms', now_ms)
  if status == queued then
    redis.call('HSET', job, '$status', running, '$started_at', now_iso)
    redis.call('HINCRBY', stats, '$jobs_by_status' .. queued, -1)
    redis.call('HINCRBY', stats, '$jobs_by_status' .. running, 1)
  end
end
-- A committed segment's items: counted, and no longer queued for the tenant's quota.
local function job_items_committed(job, stats, tenant_queued, done, failed, now_ms, first_error)
  if done + failed > 0 then
    redis.call('HINCRBY', job, '$done', done)
    redis.call('HINCRBY', job, '$failed', failed)
    redis.call('HINCRBY', stats, '$items_done', done)
    redis.call('HINCRBY', stats, '$items_failed', failed)
    redis.call('INCRBY', tenant_queued, -(done + failed))
    redis.call('HSET', job, '$progress_ms', now_ms)
  end
  if failed > 0 and first_error ~= '' then
    redis.call('HSETNX', job, '$first_error', first_error)
  end
end
""")

# KEYS: job, items, done set, failed set, lease, stats, the tenant's queued count; ARGV:
# index, record, ok (1/0), token, error, now ms. -1: fenced; 1: recorded.
RECORD_ITEM = lua("""
if redis.call('GET', KEYS[5]) ~= ARGV[4] then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local into, other, field, ofield, stat = KEYS[3], KEYS[4], '$done', '$failed', '$items_done'
if ARGV[3] ~= '1' then
  into, other, field, ofield, stat = KEYS[4], KEYS[3], '$failed', '$done', '$items_failed'
end
if redis.call('SREM', other, ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ofield, -1)
  redis.call('INCRBY', KEYS[7], 1)
end
if redis.call('SADD', into, ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], field, 1)
  redis.call('HINCRBY', KEYS[6], stat, 1)
  redis.call('INCRBY', KEYS[7], -1)
  redis.call('HSET', KEYS[1], '$progress_ms', ARGV[6])
end
if ARGV[3] ~= '1' and ARGV[5] ~= '' then redis.call('HSETNX', KEYS[1], '$first_error', ARGV[5]) end
return 1
""")

# KEYS: items, done set, failed set, lease; ARGV: index, record, token. An item's record as
# its work goes on (a visualization's pictures so far): written unless the item is finished.
PROGRESS_ITEM = """
if redis.call('GET', KEYS[4]) ~= ARGV[3] then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 or redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1
then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: job; ARGV: final status, error, allowed statuses... Mark a job as finalizing.
REQUEST_FINAL = lua("""
if redis.call('HGET', KEYS[1], '$finalizing') == '1' then return 0 end
local cur = redis.call('HGET', KEYS[1], '$status')
local allowed = false
for i = 3, #ARGV do if ARGV[i] == cur then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], '$finalizing', '1', '$final_status', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], '$error', ARGV[2]) end
return 1
""")

# KEYS: job, stats, active jobs, webhooks due, expiry, the tenant's queued count; ARGV: job
# id, status, now iso, expires at (unix s), the job's first webhook delivery ("job:event:0",
# or ""), when it is due (unix s).
FINISH = lua("""
if redis.call('HGET', KEYS[1], '$finalizing') ~= '1' then return 0 end
local cur = redis.call('HGET', KEYS[1], '$status')
redis.call('HSET', KEYS[1], '$status', ARGV[2], '$finished_at', ARGV[3], '$finalizing', '0',
           '$expires_at', ARGV[4])
redis.call('HINCRBY', KEYS[2], '$jobs_by_status' .. cur, -1)
redis.call('HINCRBY', KEYS[2], '$jobs_by_status' .. ARGV[2], 1)
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5]) end
local rest = tonumber(redis.call('HGET', KEYS[1], '$total') or '0')
  - tonumber(redis.call('HGET', KEYS[1], '$done') or '0')
  - tonumber(redis.call('HGET', KEYS[1], '$failed') or '0')
if rest > 0 then redis.call('INCRBY', KEYS[6], -rest) end
return 1
""")

# KEYS: job, the tenant's queued count; ARGV: total, skipped, quota, error, fail anyway (1/0),
# then the statuses queued, running, failed. A planned job's items are counted as queued;
# past the quota (or when told to), the job is marked finalizing towards `failed` in the same
# step, so its chunks are never released.
END_PLANNING = lua("""
redis.call('HSET', KEYS[1], '$total', ARGV[1], '$skipped', ARGV[2], '$planning', 0)
local queued = redis.call('INCRBY', KEYS[2], ARGV[1])
if ARGV[5] ~= '1' and queued <= tonumber(ARGV[3]) then return 0 end
local status = redis.call('HGET', KEYS[1], '$status')
if redis.call('HGET', KEYS[1], '$finalizing') == '1' or (status ~= ARGV[6] and status ~= ARGV[7])
then return 0 end
redis.call('HSET', KEYS[1], '$finalizing', '1', '$final_status', ARGV[8], '$error', ARGV[4])
return 1
""")

# KEYS: control lease, checkpoint; ARGV: token, then field, value pairs. Only the holder of
# the job's control lease records its finalizer's steps.
CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: job, control lease; ARGV: lease ms. A token from the job's fence, and the lease if it
# is free (else 0).
TAKE_CONTROL = JOB_LUA + """
local token = job_next_token(KEYS[1])
if redis.call('SET', KEYS[2], token, 'NX', 'PX', ARGV[1]) then return token end
return 0
"""
