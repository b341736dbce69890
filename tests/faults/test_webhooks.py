"""Signed completion webhooks end to end: a real receiver (its own process, on 127.0.0.1 at
the one port `SALIENCY_WEBHOOK_ALLOWED_HOSTS` allows) is killed during the first delivery; the
delivery is retried on the short schedule of the fast stack, with the same `webhook-id`,
and every delivery verifies with the `standardwebhooks` package and the tenant's secret from
`GET /v1/webhooks/secret`. The attempts show on the job as `notify.attempts`. An HTTPS
receiver, whose certificate names `localhost` only and is signed by the test's own CA
(`SALIENCY_WEBHOOK_CA_FILE`), gets its delivery over the pinned address.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from waiting import wait_until

from devstack import free_port
from faults.stack import webhook_env
from faults.tls import Tls

RECEIVER = Path(__file__).with_name("receiver.py")


def _receiver(port: int, record: Path, hang: bool, tls: Tls | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RECEIVER), str(port), str(record),
                             *(["--hang"] if hang else []),
                             *(["--tls", str(tls.cert), str(tls.key)] if tls else [])])


def _deliveries(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def test_a_delivery_cut_by_the_receiver_is_retried_with_the_same_id(fast_stack, hooks, pngs,
                                                                     tmp_path, figures):
    stack = fast_stack
    port, record = hooks.port, tmp_path / "deliveries.jsonl"
    first = _receiver(port, record, hang=True)
    second = None
    try:
        wait_until("the receiver listening", lambda: _listening(port), timeout=30, every=0.02)
        url = f"http://127.0.0.1:{port}/hooks/saliency"
        job_id = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"],
                               "notify": {"url": url, "events": ["succeeded"]}},
                              pngs(4, "hook"))
        wait_until("the first delivery", lambda: len(_deliveries(record)) == 1,
                   timeout=120, every=0.02)
        first.send_signal(signal.SIGKILL)  # mid-delivery: it never answers
        first.wait()
        killed = time.monotonic()
        second = _receiver(port, record, hang=False)
        wait_until("the retried delivery", lambda: len(_deliveries(record)) >= 2,
                   timeout=120, every=0.02)
        redelivered_s = time.monotonic() - killed
        job = wait_until("both attempts on the job", lambda: _attempts(stack, job_id, 2),
                         timeout=60, every=0.2)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    secret = stack.get("/v1/webhooks/secret").json()["secret"]
    one, two = _deliveries(record)[:2]
    figures(case="webhook receiver killed during the first delivery",
            retry_schedule=stack.env["SALIENCY_WEBHOOK_RETRY_SCHEDULE"],
            redelivered_s=round(redelivered_s, 1), deliveries=len(_deliveries(record)),
            attempts=job["notify"]["attempts"])
    assert one["pid"] != two["pid"]  # the second came to the restarted receiver
    assert one["headers"]["webhook-id"] == two["headers"]["webhook-id"]
    for delivery in (one, two):
        body = Webhook(secret).verify(delivery["body"], delivery["headers"])
        assert delivery["path"] == "/hooks/saliency"
        assert body["type"] == "job.succeeded"
        assert body["data"]["id"] == job_id and body["data"]["status"] == "succeeded"
        assert body["data"]["progress"]["done"] == 4
    attempts = job["notify"]["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert "error" in attempts[0] and "status" not in attempts[0]
    assert attempts[1]["status"] == 204
    assert job["notify"]["url"] == url and job["notify"]["events"] == ["succeeded"]


def test_an_https_delivery_verifies_the_certificate_against_the_host_name(
        fast_stack, hooks, pngs, tmp_path):
    """The worker connects to the address it resolved and checked, and verifies the
    receiver's certificate against `localhost` (the certificate names no address)."""
    stack = fast_stack
    record = tmp_path / "deliveries.jsonl"
    receiver = _receiver(hooks.tls_port, record, hang=False, tls=hooks.tls)
    try:
        wait_until("the receiver listening", lambda: _listening(hooks.tls_port), timeout=30,
                   every=0.02)
        url = f"https://localhost:{hooks.tls_port}/hooks/tls"
        job_id = stack.submit({"model": "tiny-resnet18", "outputs": ["npy"],
                               "notify": {"url": url, "events": ["succeeded"]}},
                              pngs(1, "tls"))
        job = wait_until("the delivery on the job", lambda: _attempts(stack, job_id, 1),
                         timeout=120, every=0.2)
    finally:
        receiver.kill()
        receiver.wait()
    secret = stack.get("/v1/webhooks/secret").json()["secret"]
    (delivery,) = _deliveries(record)
    body = Webhook(secret).verify(delivery["body"], delivery["headers"])
    assert body["type"] == "job.succeeded" and body["data"]["id"] == job_id
    assert delivery["headers"]["Host"] == f"localhost:{hooks.tls_port}"
    assert job["notify"]["attempts"][0]["status"] == 204, job["notify"]["attempts"]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _attempts(stack, job_id: str, n: int) -> dict | None:
    job = stack.job(job_id)
    return job if len(job.get("notify", {}).get("attempts", [])) >= n else None


@pytest.mark.chaos
def test_a_delivery_cut_by_its_workers_death_is_made_again(make_stack, pngs, tiny_weights,
                                                           tmp_path):
    """The pool process delivering is killed (as the kernel's OOM killer would) while the
    receiver has not answered yet: the task goes back to the queue, and the delivery is made
    again with the same `webhook-id`."""
    port, record = free_port(), tmp_path / "deliveries.jsonl"
    stack = make_stack(workers=1, extra=webhook_env(port))
    model = stack.register_model(tiny_weights)
    receiver = _receiver(port, record, hang=True)
    try:
        wait_until("the receiver listening", lambda: _listening(port), timeout=30, every=0.02)
        job_id = stack.submit({"model": model, "outputs": ["npy"],
                               "notify": {"url": f"http://127.0.0.1:{port}/h"}}, pngs(2, "oom"))
        wait_until("the first delivery", lambda: len(_deliveries(record)) == 1,
                   timeout=120, every=0.02)
        main = stack.workers[0].proc.pid
        for pid in _children(main):
            os.kill(pid, signal.SIGKILL)
        wait_until("the delivery made again", lambda: len(_deliveries(record)) >= 2,
                   timeout=180, every=0.2)
    finally:
        receiver.kill()
        receiver.wait()
    one, two = _deliveries(record)[:2]
    assert one["headers"]["webhook-id"] == two["headers"]["webhook-id"]
    assert stack.job(job_id)["status"] == "succeeded"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue  # it exited meanwhile
            if ppid == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.chaos
def test_a_finalizer_killed_before_it_sent_the_delivery_loses_none(make_stack, pngs,
                                                                   tiny_weights, tmp_path):
    """The worker dies the moment the job is final, before it sends the delivery
    (`SALIENCY_FAULTS=kill_at:finished`): the delivery, due in the same transaction that
    made the job final, is sent by the reconciler."""
    port, record = free_port(), tmp_path / "deliveries.jsonl"
    stack = make_stack(workers=1, extra={**webhook_env(port),
                                         "SALIENCY_FAULTS": "kill_at:finished"})
    model = stack.register_model(tiny_weights)
    receiver = _receiver(port, record, hang=False)
    try:
        wait_until("the receiver listening", lambda: _listening(port), timeout=30, every=0.02)
        job_id = stack.submit({"model": model, "outputs": ["npy"],
                               "notify": {"url": f"http://127.0.0.1:{port}/h"}}, pngs(2, "fin"))
        job = stack.wait_final(job_id)
        wait_until("the delivery", lambda: _deliveries(record), timeout=240, every=0.2)
    finally:
        receiver.kill()
        receiver.wait()
    secret = stack.get("/v1/webhooks/secret").json()["secret"]
    (delivery,) = _deliveries(record)
    body = Webhook(secret).verify(delivery["body"], delivery["headers"])
    assert body["type"] == "job.succeeded" and body["data"]["id"] == job_id
    assert job["status"] == "succeeded"
    assert "fault injection: killing this worker at finished" in stack.workers[0].log.read_text(
        errors="replace")
