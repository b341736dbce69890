"""The bodies of the job tasks, callable without Celery: run a chunk, plan a data set, start
the next phase or finalize, validate a model.

Each takes a lease first (the chunk's, or the job's control lease), keeps it alive with a
heartbeat while it works, and publishes only while it holds it. A job-level problem (its
model invalid or deleted, its data set unreadable) fails the job: it is marked finalizing
with the reason, and its finalizer writes what exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.errors import InputError
from shared.state.chunks import Fenced
from shared.state.jobs import Job
from shared.state.jobschema import WORKERS, RecordKeys
from shared.state.modelstore import ModelStatus
from shared.state.redisio import now_ms
from shared.status import JobStatus
from shared.taskqueue import DELIVER_WEBHOOK, NEXT_PHASE, pump, send_control
from worker.jobs.context import ControlContext, WorkerContext
from worker.jobs.leases import LeaseKeeper
from worker.jobs.metrics import QUEUE_WAIT
from worker.jobs.retry import BudgetSpent

log = logging.getLogger(__name__)


def beat(ctx: WorkerContext, worker: str) -> None:
    """Tell the fair queue this worker is alive (its window is twice the live workers)."""
    ctx.redis.zadd(WORKERS, {worker: now_ms()})


def fail_job(ctx: ControlContext, job_id: str, message: str) -> None:
    """Fail a job for a reason of its own; its finalizer then writes what exists."""
    if ctx.jobs.request_final(job_id, JobStatus.FAILED, message):
        log.warning("job %s failed: %s", job_id, message)
        send_control(ctx.sender, NEXT_PHASE, job_id)


def run_chunk(ctx: WorkerContext, job_id: str, start: int, worker: str) -> None:
    """Run chunk `start` of a job if no other worker holds it, then commit what was done."""
    from worker.kinds import KINDS

    lease_s = ctx.settings.lease_s
    lease = ctx.chunks.acquire(job_id, start, worker, lease_s)
    if isinstance(lease, str):
        log.info("job %s chunk %d: not run (%s)", job_id, start, lease)
        pump(ctx.sender, ctx.fair)
        return
    job = ctx.jobs.get(job_id)
    t0 = time.perf_counter()
    if lease.sent_ms:
        QUEUE_WAIT.observe(max(0.0, (now_ms() - lease.sent_ms) / 1000))
    keeper = LeaseKeeper(lambda: ctx.chunks.renew(lease.key, lease.token, lease_s), lease_s,
                         on_beat=lambda: beat(ctx, worker))
    with keeper:
        try:
            result, to_back = KINDS[job.kind].run_chunk(ctx, job, lease, keeper, worker)
        except Fenced as e:
            log.warning("%s; its results are not published", e)
            return
        except InputError as e:
            fail_job(ctx, job_id, e.message)
            result, to_back = None, False
        except BudgetSpent as e:
            log.warning("job %s chunk %d: giving the chunk back: %s", job_id, start, e)
            ctx.chunks.commit(lease, lease.start)
            return
    if result is None:  # the job is being finalized: nothing more of this chunk is wanted
        ctx.chunks.release(lease)
        return
    outcome = ctx.chunks.commit(lease, result.upto, segment=result.segment, done=result.done,
                                failed=result.failed, first_error=result.first_error,
                                to_back=to_back)
    log.info("job %s chunk [%d:%d): %s in %.2f s", job_id, start, result.upto,
             {-1: "fenced, not published", 1: "committed", 2: "committed, last"}[outcome],
             time.perf_counter() - t0)
    if outcome == 2:
        send_control(ctx.sender, NEXT_PHASE, job_id)
    pump(ctx.sender, ctx.fair)


def release_waiting(ctx: ControlContext, job: Job) -> None:
    """A job whose chunks wait (planned) for its model or its planning: start or fail it."""
    if job.planning or job.finalizing or job.is_final:
        return
    try:
        record = ctx.models.for_job(job)
    except InputError as e:
        fail_job(ctx, job.id, e.message)
        return
    if record.status == ModelStatus.INVALID:
        fail_job(ctx, job.id, f"model {record.name!r} is invalid: {record.error}")
    elif record.status == ModelStatus.READY:
        ctx.chunks.activate(job.id)
        if ctx.jobs.open_chunks(job.id) == 0:
            send_control(ctx.sender, NEXT_PHASE, job.id)
        pump(ctx.sender, ctx.fair)


def _with_control(ctx: WorkerContext, job_id: str, work: Callable[[int], None]) -> bool:
    """Run `work(token)` holding the job's control lease; False if another worker holds it."""
    lease_s = ctx.settings.lease_s
    token = ctx.jobs.take_control(job_id, lease_s)
    if token is None:
        return False
    keeper = LeaseKeeper(lambda: ctx.chunks.renew(RecordKeys(job_id).control, token, lease_s),
                         lease_s)
    try:
        with keeper:
            work(token)
    finally:
        ctx.jobs.release_control(job_id, token)
    return True


def plan(ctx: WorkerContext, job_id: str) -> None:
    """Plan a data-set job (see `worker.jobs.plans`), then start it. A planning that keeps dying
    (`SALIENCY_MAX_ATTEMPTS` times) ends, failing the job."""
    from worker.jobs.plans import plan_job, stop_planning

    def work(_token: int) -> None:
        job = ctx.jobs.get(job_id)
        if job is None or not job.planning or job.is_final:
            return
        attempts = ctx.jobs.count_plan_attempt(job_id)
        if attempts > ctx.settings.max_attempts:
            stop_planning(ctx, job, f"planning the data set failed {attempts - 1} times")
            return
        try:
            plan_job(ctx, job_id)
        except InputError as e:
            stop_planning(ctx, job, e.message)

    if _with_control(ctx, job_id, work):
        job = ctx.jobs.get(job_id)
        if job is not None:
            release_waiting(ctx, job)


def advance(ctx: WorkerContext, job_id: str) -> None:
    """A job whose chunks are all done: start its next phase, or finalize it. A finalizer
    that used half the task's time limit continues in a fresh task (sent once its control
    lease is released)."""
    from worker.kinds import KINDS

    unfinished: list[str] = []

    def work(token: int) -> None:
        job = ctx.jobs.get(job_id)
        if job is None or job.is_final or job.planning:
            return
        kind = KINDS[job.kind]
        if not job.finalizing:
            if ctx.jobs.open_chunks(job_id) > 0:
                return  # not every chunk is done: a stray task
            if kind.next_phase(ctx, job):
                pump(ctx.sender, ctx.fair)
                return
            status, error = JobStatus.SUCCEEDED, None
            if job.total > 0 and job.failed == job.total:
                status = JobStatus.FAILED
                error = f"every item failed; the first: {job.first_error or 'unknown'}"
            ctx.jobs.request_final(job_id, status, error, (JobStatus.QUEUED, JobStatus.RUNNING))
        if not finalize(ctx, job_id, token):
            unfinished.append(job_id)

    _with_control(ctx, job_id, work)
    if unfinished:
        send_control(ctx.sender, NEXT_PHASE, job_id)


def finalize(ctx: WorkerContext, job_id: str, token: int) -> bool:
    """Fence the job's chunks, write its results file and report (resuming after the steps
    earlier finalizers recorded), and make it final. False if it stopped short: half the
    task's time limit was used."""
    from worker.jobs.finalizing import Finalizing, finalizer_steps
    from worker.kinds import KINDS

    ctx.chunks.fence_all(job_id)
    job = ctx.jobs.get(job_id)
    if job is None or job.is_final or not job.finalizing:
        return True
    try:
        spec = ctx.models.for_job(job).spec
    except InputError:  # the model was deleted or replaced: its class names are not the job's
        spec = None
    finalizing = Finalizing.start(ctx, job, token)
    deadline = time.monotonic() + ctx.settings.task_time_limit_s / 2
    try:
        for step in finalizer_steps(finalizing, KINDS[job.kind], spec):
            log.info("job %s: finalizer step done: %s", job_id, step)
            if time.monotonic() > deadline:
                log.info("job %s: finalizer stopped after %s (half its time limit); it "
                         "continues in a fresh task", job_id, step)
                return False
    except Fenced as e:
        log.warning("%s; it stops", e)
        return True
    retention = job.spec.retention_s or ctx.settings.result_ttl_s
    status = job.final_status or JobStatus.SUCCEEDED
    ctx.jobs.compact(job_id)
    notify = job.spec.notify
    event = status.value if notify and status.value in notify["events"] else None
    if not ctx.jobs.finish(job_id, status, retention, event, ctx.settings.lease_s):
        return True
    finalizing.delete_parts()
    ctx.jobs.clear_checkpoint(job_id)
    reruns = ctx.jobs.reruns(job_id)
    log.info("job %s is %s (%d item attempts repeated)", job_id, status.value, reruns)
    if ctx.settings.faults:
        from worker.jobs import faults

        faults.at_point(ctx.settings, "finished")
    if event:
        send_control(ctx.sender, DELIVER_WEBHOOK, job_id, event, 0)
    return True


def validate(ctx: WorkerContext, tenant: str, name: str) -> None:
    """Validate a registered model, then start (or fail) the jobs that wait for it."""
    from worker.jobs.models import validate_model

    if validate_model(ctx, tenant, name) is None:
        return
    for job_id in ctx.jobs.active():
        job = ctx.jobs.get(job_id)
        if job is not None and job.spec.model == name:
            release_waiting(ctx, job)

