"""The reconciler: a periodic task (sent by Celery beat) that finds lost work and restarts it.
It runs in a process of its own that consumes only its queue, one task at a time
(`python -m worker reconciler`), so that busy workers never delay it; that process never
imports torch. Nothing is lost for good when a worker, Redis or the broker fails mid-job:

- a chunk `running` whose lease was not renewed for two thirds of its length (renewals come
  every third: its worker died, hung, or lost Redis) is fenced and made ready again — a
  chunk of a killed worker is taken over within 2/3 `SALIENCY_LEASE_S` plus one reconcile
  period (`SALIENCY_RECONCILE_EVERY_S`): 55 s on the defaults; so is a chunk `sent` long
  ago whose task is neither in Celery's queue nor delivered recently (the message was lost,
  or the worker it was delivered to died before starting it);
- a job whose chunks are all done, or that is finalizing, with no finalizer holding its
  control lease gets one; so does a planning job with no planner;
- chunks waiting for their model start (or fail) once the model is validated;
- built-in models missing after a Redis loss are recorded again and validated;
- a job with no progress for `SALIENCY_STALL_S` has its running chunks fenced, so they are
  taken over; after `SALIENCY_MAX_ATTEMPTS` such stalls it fails with the reason.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass, field

from shared.models.registry import ensure_builtin_records
from shared.state.jobschema import ChunkStatus, chunk_ref
from shared.state.modelstore import BUILTIN_TENANT, ModelStatus
from shared.state.redisio import PREFIX, now_ms
from shared.taskqueue import NEXT_PHASE, PLAN, QUEUE, RUN_CHUNK, VALIDATE_MODEL, pump, send_control
from worker.jobs.context import ControlContext
from worker.jobs.metrics import RECONCILER
from worker.jobs.runner import fail_job, release_waiting
from worker.jobs.webhooks import send_due

log = logging.getLogger(__name__)
RESEND_KEY = PREFIX + "reconcile:sent:"  # de-duplicates control tasks sent by the reconciler
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"  # Celery's Redis transport: delivered tasks


@dataclass
class Actions:
    """What one pass did, for the log and the metrics."""

    requeued_lost: int = 0
    requeued_vanished: int = 0
    control_sent: int = 0
    stalled: int = 0
    webhooks: int = 0
    models: list[str] = field(default_factory=list)

    def any(self) -> bool:
        return bool(self.requeued_lost or self.requeued_vanished or self.control_sent
                    or self.stalled or self.webhooks or self.models)


def celery_chunk_refs(ctx: ControlContext, delivered_after: float = 0.0) -> set[str]:
    """`job:start` of every chunk task in Celery's queue, or delivered to a worker (in its
    unacknowledged set) after `delivered_after` (unix s).

    A chunk's task delivered long ago whose chunk is still `sent` was reserved by a worker
    that never started it (killed while its pool process was starting): only the visibility
    timeout would give it back, so it does not count as present."""
    refs = set()
    recent = set(ctx.redis.zrangebyscore(UNACKED_INDEX, delivered_after, "+inf"))
    unacked = ctx.redis.hgetall(UNACKED)
    raw = [*ctx.redis.lrange(QUEUE, 0, -1), *(v for k, v in unacked.items() if k in recent)]
    for text in raw:
        try:
            message = json.loads(text)
            if isinstance(message, list):  # unacked entries: [message, exchange, routing key]
                message = message[0]
            headers = message.get("headers", {})
            if headers.get("task") != RUN_CHUNK:
                continue
            job_id, start = ast.literal_eval(headers.get("argsrepr", "()"))[:2]
            refs.add(chunk_ref(job_id, int(start)))
        except (ValueError, SyntaxError, TypeError, KeyError, AttributeError):
            continue
    return refs


def _send_once(ctx: ControlContext, name: str, *args: str) -> bool:
    """Send a control task unless the reconciler sent the same one within a lease."""
    key = RESEND_KEY + ":".join((name, *args))
    if not ctx.redis.set(key, 1, nx=True, ex=ctx.settings.lease_s):
        return False
    send_control(ctx.sender, name, *args)
    return True


def reconcile(ctx: ControlContext) -> Actions:
    """One pass over every unfinished job; see the module's docstring."""
    settings, actions = ctx.settings, Actions()
    if settings.builtin_models:
        for name in ensure_builtin_records(ctx.models):
            send_control(ctx.sender, VALIDATE_MODEL, BUILTIN_TENANT, name)
            actions.models.append(name)
        for record in ctx.models.list(BUILTIN_TENANT):
            if record.status == ModelStatus.VALIDATING and _send_once(
                    ctx, VALIDATE_MODEL, BUILTIN_TENANT, record.name):
                actions.models.append(record.name)
    now = now_ms()
    grace_ms = 2 * settings.lease_s * 1000
    silent_ms = settings.lease_s * 1000 // 3  # two renewals missed
    in_celery: set[str] | None = None
    for job_id in ctx.jobs.active():
        job = ctx.jobs.get(job_id)
        if job is None:
            ctx.jobs.forget(job_id)
            continue
        if job.is_final:
            continue
        if job.planning or job.finalizing:
            if not ctx.jobs.control_held(job_id) and _send_once(
                    ctx, PLAN if job.planning else NEXT_PHASE, job_id):
                actions.control_sent += 1
            continue
        states = ctx.chunks.states(job_id)
        for chunk in states:
            if chunk.state == ChunkStatus.RUNNING and ctx.chunks.requeue(
                    job_id, chunk.start, ChunkStatus.RUNNING, silent_ms=silent_ms):
                actions.requeued_lost += 1
                log.warning("job %s chunk %d: its lease was not renewed (worker %s lost); "
                            "requeued", job_id, chunk.start, chunk.worker)
            elif chunk.state == ChunkStatus.SENT and (chunk.sent_ms or 0) < now - grace_ms:
                if in_celery is None:
                    in_celery = celery_chunk_refs(ctx, (now - grace_ms) / 1000)
                if chunk_ref(job_id, chunk.start) not in in_celery and ctx.chunks.requeue(
                        job_id, chunk.start, ChunkStatus.SENT, now - grace_ms):
                    actions.requeued_vanished += 1
                    log.warning("job %s chunk %d: its task vanished; requeued", job_id,
                                chunk.start)
        if any(c.state == ChunkStatus.PLANNED for c in states):
            release_waiting(ctx, job)
        elif (all(c.state == ChunkStatus.DONE for c in states) if states else job.total == 0):
            if not ctx.jobs.control_held(job_id) and _send_once(ctx, NEXT_PHASE, job_id):
                actions.control_sent += 1
        if now - job.progress_ms > settings.stall_s * 1000 and any(
                c.state == ChunkStatus.RUNNING for c in states):
            _stalled(ctx, job_id, states)
            actions.stalled += 1
    ctx.fair.collect()
    actions.webhooks = send_due(ctx)
    pump(ctx.sender, ctx.fair)
    if actions.any():
        log.info("reconciler: %s", actions)
        for action in ("requeued_lost", "requeued_vanished", "control_sent", "stalled",
                       "webhooks"):
            RECONCILER.labels(action).inc(getattr(actions, action))
    return actions


def _stalled(ctx: ControlContext, job_id: str, states) -> None:
    """No progress for the stall time: take the running chunks away from their workers."""
    stalls = ctx.jobs.count_stall(job_id)
    if stalls > ctx.settings.max_attempts:
        fail_job(ctx, job_id, f"no progress for {ctx.settings.stall_s} s, "
                              f"{ctx.settings.max_attempts} times")
        return
    running = [c.start for c in states if c.state == ChunkStatus.RUNNING]
    log.warning("job %s: no progress for %d s; fencing its running chunks %s", job_id,
                ctx.settings.stall_s, running)
    for start in running:
        ctx.chunks.revoke(job_id, start)

