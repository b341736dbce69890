"""The worker's watchdog (celery#8091: a worker that silently stops consuming after a broker
reconnect). It pings the worker's own queue every lease; a worker whose pool process is up
but has answered nothing for three leases is stopped, and its supervisor starts a fresh one.
A pool process still warming up is not judged: a slow start (`SALIENCY_FAULTS=slow_start:…`,
longer than three leases) must not be mistaken for a worker that stopped consuming.
"""

from __future__ import annotations

import time

import pytest
from waiting import wait_until

from faults.stack import LEASE_S
from shared.settings import Settings
from shared.taskqueue import QUEUES, make_sender
from worker.celery_app import own_queue

SLOW_START_S = 4 * LEASE_S
RESTARTING = "the worker stopped consuming: restarting it"


@pytest.mark.chaos
def test_the_watchdog_spares_a_slow_start_and_restarts_a_worker_that_stopped_consuming(
        make_stack, tiny_weights, pngs, figures):
    stack = make_stack(workers=1, extra={"SALIENCY_FAULTS": f"slow_start:{SLOW_START_S}"})
    worker = stack.workers[0]
    stack.register_model(tiny_weights)  # validated by the worker once it has warmed up
    slow_start_restarts = stack.restarts
    spared = RESTARTING not in worker.log.read_text(errors="replace")

    name = stack.worker_name(worker)
    sender = make_sender(Settings.from_env(stack.env))
    for queue in (*QUEUES, own_queue(name)):
        sender.control.cancel_consumer(queue, destination=[name], reply=True, timeout=10)
    stopped = time.monotonic()
    wait_until("the worker restarted", lambda: stack.restarts > slow_start_restarts,
               timeout=6 * LEASE_S + SLOW_START_S + 180, every=0.2)
    restarted_s = time.monotonic() - stopped
    job_id = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"]}, pngs(2, "dog"))
    job = stack.wait_final(job_id)
    figures(case="worker stops consuming (consumers cancelled)", lease_s=LEASE_S,
            restarted_after_s=round(restarted_s, 1), slow_start_s=SLOW_START_S)
    assert spared and slow_start_restarts == 0
    assert RESTARTING in worker.log.read_text(errors="replace")
    assert job["status"] == "succeeded"
