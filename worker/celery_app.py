"""The worker's Celery app: JSON only, late acks, one task at a time per process, the periodic
tasks (sent by the one `beat` process), and a watchdog that restarts a consumer that stopped
consuming.

The same app runs in two roles: `worker` (the job queues: chunks and control tasks) and
`reconciler` (only the reconciler's queue; no torch, no model). Signal handlers:
`setup_logging` hands logging to `shared.logs`; `celeryd_init` learns the process's name;
`worker_process_init` warms the pool child and starts its liveness heartbeat; `worker_ready`
starts the watchdog in the main process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import redis
from celery import Celery, signals

from shared.logs import configure_logging
from shared.settings import Settings
from shared.state.jobschema import RECONCILERS, WORKERS
from shared.state.redisio import connect, now_ms
from shared.taskqueue import PING, QUEUES, RECONCILE, RECONCILE_QUEUE, SWEEP, celery_config
from worker.tasks import PONG_KEY, register_tasks

log = logging.getLogger(__name__)
# Importing torch and torch._dynamo in a fresh child takes seconds on a busy machine: far more
# than Celery's default 4 s wait for a new pool process to report for work.
PROCESS_START_TIMEOUT_S = 300
_worker_name = {"name": f"worker-{os.getpid()}"}
# Each role: the queues it consumes (besides its own) and where its pool child's liveness
# heartbeat goes. Only workers count in WORKERS: the fair queue's window is twice their number.
ROLES = {"worker": (QUEUES, WORKERS), "reconciler": ((RECONCILE_QUEUE,), RECONCILERS)}


def own_queue(worker: str) -> str:
    """The queue only this worker consumes: its liveness pings go there."""
    return f"saliency.w.{worker}"


def make_celery(settings: Settings | None = None, role: str = "worker") -> Celery:
    """The app of a worker process in `role` (see `ROLES`)."""
    settings = settings or Settings.from_env()
    liveness = ROLES[role][1]
    app = Celery("saliency-worker", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.update(
        saliency_settings=settings,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(1, settings.task_time_limit_s
                                 - min(60, settings.task_time_limit_s // 10)),
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_proc_alive_timeout=PROCESS_START_TIMEOUT_S,
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": float(settings.reconcile_every_s)},
            "sweep": {"task": SWEEP, "schedule": float(settings.reconcile_every_s)},
        },
        beat_schedule_filename=str(Path(settings.data_dir, "celerybeat-schedule").absolute()),
    )
    register_tasks(app)

    def setup_logging(**_) -> None:
        configure_logging(settings)

    def named(sender=None, **_) -> None:
        _worker_name["name"] = str(sender)

    def warm_up(**_) -> None:
        if role == "worker":
            warm_process(settings, app)
        else:
            warm_reconciler(settings, app)

    def ready(sender=None, **_) -> None:
        threading.Thread(target=watchdog, args=(app, settings, _worker_name["name"], liveness),
                         name="watchdog", daemon=True).start()

    # weak=False: the receivers are closures that would otherwise be collected at once.
    signals.setup_logging.connect(setup_logging, weak=False)
    signals.celeryd_init.connect(named, weak=False)
    signals.worker_process_init.connect(warm_up, weak=False)
    signals.worker_ready.connect(ready, weak=False)
    return app


def warm_process(settings: Settings, app: Celery) -> None:
    """Pay a pool child's one-time costs before its first task rather than during it, and
    start its liveness heartbeat (the fair queue sends twice as many chunks as live workers).

    The allocator is told to keep freed memory (see `worker.allocator`); the context opens
    the connections and imports torch and the model code (torchvision, timm).
    `torch._dynamo` is imported explicitly: anything decorated with `torch._disable_dynamo`
    imports it on first use, about 4 s on a 2-core VM that the first job would otherwise
    wait for; so are the job kinds (`worker.kinds`: the engine, the audit, the
    visualizations), which the task bodies import on first use. The first task then pays
    only for its model.
    """
    start = time.perf_counter()
    if settings.faults:
        from worker.jobs import faults

        faults.at_start(settings)
    from worker.allocator import keep_freed_memory
    from worker.jobs.context import context
    from worker.jobs.metrics import export

    keep_freed_memory()
    ctx = context(settings, app)
    export(settings.metrics_port)
    import torch
    import torch._dynamo  # noqa: F401

    import worker.kinds  # noqa: F401

    _heartbeat(ctx.redis, WORKERS, settings)
    log.info("worker process warmed up in %.1f s (torch threads: %d intra-op, %d inter-op)",
             time.perf_counter() - start, torch.get_num_threads(), torch.get_num_interop_threads())


def warm_reconciler(settings: Settings, app: Celery) -> None:
    """The reconciler's pool child: its connections, its metrics (the reconciler's actions)
    and its liveness heartbeat; no torch."""
    from worker.jobs.context import control_context
    from worker.jobs.metrics import export

    ctx = control_context(settings, app)
    export(settings.metrics_port)
    _heartbeat(ctx.redis, RECONCILERS, settings)
    log.info("reconciler process ready")


def _heartbeat(client: redis.Redis, key: str, settings: Settings) -> None:
    """Record in the sorted set `key`, every third of a lease, that this pool child is up."""
    name = _worker_name["name"]

    def beat() -> None:
        while True:
            try:
                client.zadd(key, {name: now_ms()})
            except OSError as e:
                log.warning("liveness heartbeat failed: %s", e)
            time.sleep(max(1.0, settings.lease_s / 3))

    threading.Thread(target=beat, name="liveness", daemon=True).start()


def watchdog(app: Celery, settings: Settings, worker: str, liveness: str = WORKERS) -> None:
    """In the main process: every lease, send a ping to this worker's own queue; if an idle
    worker has not answered for three leases, it no longer consumes (a broker reconnect can
    leave Celery so, celery#8091): stop it, so that its supervisor starts a fresh one.

    Only a worker whose pool child is up is judged (its heartbeat in `liveness`): the child's
    heartbeat starts once it has warmed up, and a warm-up (torch, CUDA) can outlast three
    short leases on a busy host; counting it would restart the worker before it ever took a
    task, forever."""
    from celery.worker import state

    client = connect(settings.redis_url)
    period = float(settings.lease_s)
    sent_at = time.time()
    while True:
        time.sleep(period)
        try:
            app.send_task(PING, args=[worker], queue=own_queue(worker))
            pong = client.get(PONG_KEY + worker)
            alive = client.zscore(liveness, worker)
        except OSError as e:
            log.warning("watchdog: broker unreachable: %s", e)
            continue
        answered = pong is not None and int(pong) / 1000 >= sent_at
        if answered or alive is None or alive / 1000 < time.time() - period:
            sent_at = time.time()  # answered, or the pool child is not up (yet) to answer
        elif not state.active_requests and time.time() - sent_at > 3 * period:
            log.error("watchdog: no ping answered for %.0f s while idle; the worker stopped "
                      "consuming: restarting it", time.time() - sent_at)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        elif state.active_requests:
            sent_at = time.time()  # busy: pings wait behind the running task
