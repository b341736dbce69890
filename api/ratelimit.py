"""Per-tenant rate limits (token buckets in Redis, shared by every API process) and the
queued-items quota. Probes, `/metrics`, `/openapi.json` and the pages are exempt; so are the
signed file URLs (they carry their own authorization and are bounded by their expiry).

`SALIENCY_RATE_SUBMIT` POSTs per second with bursts of `SALIENCY_RATE_SUBMIT_BURST`, and
`SALIENCY_RATE_READ` GETs per second, per tenant; beyond them, `429` with `Retry-After`.
"""

from __future__ import annotations

import math

from flask import Flask, g, request

from api.context import services
from shared.errors import RateLimitedError, TooLargeError
from shared.state.jobschema import rate_key
from shared.state.redisio import TRANSIENT, now_ms

# KEYS: bucket; ARGV: rate per s, burst, now ms, cost. Returns {allowed, wait ms}.
_TAKE = """
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) / 1000 * rate)
local allowed, wait = 0, 0
if tokens >= cost then tokens = tokens - cost; allowed = 1
else wait = math.ceil((cost - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait}
"""


def check_queue_quota(tenant: str, items: int | None) -> None:
    """Refuse a job that would take the tenant's queued items over `SALIENCY_MAX_QUEUED_ITEMS`:
    `413` if it could never fit, `429` (retry later) if it does not fit now. A data set
    (`items` None) is counted when planned; it needs room for one item to be accepted."""
    svc = services()
    limit = svc.settings.max_queued_items
    if items is not None and items > limit:
        raise TooLargeError(
            f"quota: this job's {items} items exceed the limit of {limit} queued items per "
            "tenant (SALIENCY_MAX_QUEUED_ITEMS): it can never run; split it into jobs of at "
            f"most {limit} items")
    queued = svc.jobs.queued(tenant)
    if queued + (items or 1) > limit:
        what = "a data set's items" if items is None else f"this job's {items}"
        raise RateLimitedError(
            f"quota: {queued} items queued, and {what} would exceed the limit of {limit} per "
            "tenant (SALIENCY_MAX_QUEUED_ITEMS); retry when some have run",
            retry_after=30,
        )


def init_app(app: Flask) -> None:
    svc = app.extensions["saliency"]
    take = svc.redis.register_script(_TAKE)
    settings = svc.settings

    @app.before_request
    def limit() -> None:
        if not request.path.startswith("/v1/") or g.get("signed") or request.method in (
                "OPTIONS", "HEAD"):
            return
        if request.method == "GET":
            kind, rate, burst = "read", settings.rate_read, max(1.0, settings.rate_read)
        else:
            kind, rate, burst = "submit", settings.rate_submit, settings.rate_submit_burst
        try:
            allowed, wait_ms = take(keys=[rate_key(g.tenant, kind)],
                                    args=[rate, burst, now_ms(), 1])
        except TRANSIENT:
            return  # Redis is down: the view answers 503 if it needs Redis; probes do not

        if not allowed:
            retry = max(1, math.ceil(int(wait_ms) / 1000))
            raise RateLimitedError(
                f"rate limit: more than {rate:g} {kind} requests per second for this tenant; "
                f"retry in {retry} s", retry_after=retry)
