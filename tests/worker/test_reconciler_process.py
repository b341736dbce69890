"""The reconciler's own path, on a real Redis: beat's reconciler tasks land on a queue no
worker consumes, and the process that consumes it runs a pass without ever importing torch."""

from __future__ import annotations

import subprocess
import sys

import redis

from shared.settings import Settings
from shared.taskqueue import CONTROL_QUEUE, QUEUE, RECONCILE, RECONCILE_QUEUE, SWEEP


def test_the_reconciler_is_sent_to_its_own_queue_which_no_worker_consumes(redis_server):
    from worker.celery_app import ROLES, make_celery

    url = f"{redis_server}/14"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    app = make_celery(Settings(redis_url=url))
    scheduled = [entry["task"] for entry in app.conf.beat_schedule.values()]
    assert sorted(scheduled) == sorted([RECONCILE, SWEEP])
    for name in scheduled:
        app.send_task(name)  # as beat sends them: by name, routed by the configuration
    assert client.llen(RECONCILE_QUEUE) == 1 and client.llen(CONTROL_QUEUE) == 1
    assert client.llen(QUEUE) == 0
    assert RECONCILE_QUEUE not in ROLES["worker"][0]
    assert ROLES["reconciler"][0] == (RECONCILE_QUEUE,)
    client.flushdb()


def test_a_reconciler_pass_never_imports_torch(redis_server, tmp_path):
    code = f"""
import sys
from shared.settings import Settings
from worker.jobs.context import ControlContext
from worker.jobs.reconciler import reconcile
from worker.celery_app import make_celery
settings = Settings(redis_url="{redis_server}/14", storage_url="{tmp_path.as_uri()}",
                    builtin_models=False)
make_celery(settings, "reconciler")
reconcile(ControlContext.create(settings))
assert "torch" not in sys.modules, "torch imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    redis.Redis.from_url(f"{redis_server}/14").flushdb()
