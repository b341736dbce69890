"""Delivering a job's completion webhook: at least once, with the same `webhook-id` on every
retry, on the schedule `SALIENCY_WEBHOOK_RETRY_SCHEDULE` (seconds after each failure; the
default spans about 24 hours). A delivery that is due waits in a Redis sorted set, and the
reconciler (on Celery beat) sends it. The first one is put there, due a lease later, when
the job becomes final (in the same transaction), and sent at once; whichever delivery starts
first takes it out, so a finalizer that dies before sending loses no delivery. Every
attempt is recorded on the job (`notify.attempts`).
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import urlparse

from shared.errors import SpecError
from shared.settings import Settings
from shared.state.jobschema import WEBHOOKS_DUE
from shared.taskqueue import DELIVER_WEBHOOK, send_control
from shared.webhooks import payload, resolve_allowed, signed_headers, tenant_secret
from worker.jobs.context import ControlContext, WorkerContext

log = logging.getLogger(__name__)
DUE = WEBHOOKS_DUE  # "job:event:attempt" -> when it is due (unix s)
TIMEOUT_S = 10


class PinnedConnection(http.client.HTTPConnection):
    """HTTP to the addresses the SSRF rules checked (the first that answers), for the URL's
    host (its `Host` header): no second DNS answer is asked for, so a rebinding one is never
    used."""

    def __init__(self, host: str, port: int, addresses: tuple[str, ...]) -> None:
        super().__init__(host, port, timeout=TIMEOUT_S)
        self.addresses = addresses

    def connect(self) -> None:
        error = OSError(f"no address to connect to for {self.host!r}")
        for address in self.addresses:
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
                return
            except OSError as e:
                error = e
        raise error


class PinnedTLSConnection(PinnedConnection):
    """HTTPS to the pinned addresses; the certificate is verified against the URL's host name
    (not an address) with the CAs of `SALIENCY_WEBHOOK_CA_FILE`, or the system's."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, addresses: tuple[str, ...],
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, addresses)
        self.context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)


def post(url: str, body: str, headers: dict[str, str], settings: Settings) -> int:
    """POST to the addresses the SSRF rules allow (checked again now: no DNS rebinding); the
    answer's status."""
    host, port, addresses = resolve_allowed(url, settings.webhook_allowed_hosts)
    parsed = urlparse(url)
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    if parsed.scheme == "https":
        context = ssl.create_default_context(cafile=settings.webhook_ca_file)
        conn: PinnedConnection = PinnedTLSConnection(host, port, addresses, context)
    else:
        conn = PinnedConnection(host, port, addresses)
    try:
        conn.request("POST", path, body=body.encode(), headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def deliver(ctx: WorkerContext, job_id: str, event: str, attempt: int) -> None:
    """One delivery attempt; on failure, the next one is scheduled."""
    ctx.redis.zrem(DUE, f"{job_id}:{event}:{attempt}")  # taken: the reconciler won't send it
    settings = ctx.settings
    job = ctx.jobs.get(job_id)
    notify = job.spec.notify if job else None
    if job is None or not notify or event not in notify["events"] or not (
            settings.webhook_master_key):
        return
    message_id = f"msg_{job_id}_{event}"
    when = datetime.now(UTC)
    body = payload(event, job.to_json(), when)
    headers = signed_headers(tenant_secret(settings.webhook_master_key, job.tenant),
                             message_id, body, when)
    started = time.time()
    try:
        status = post(notify["url"], body, headers, settings)
        outcome = {"status": status}
    except (OSError, http.client.HTTPException, SpecError) as e:
        status, outcome = 0, {"error": f"{type(e).__name__}: {e}"[:300]}
    ctx.jobs.note_delivery(job_id, {"attempt": attempt + 1,
                                    "at": when.isoformat(timespec="seconds"),
                                    "duration_ms": round((time.time() - started) * 1000),
                                    **outcome})
    if 200 <= status < 300:
        return
    schedule = settings.webhook_retry_schedule
    if attempt >= len(schedule):
        log.warning("webhook of job %s (%s): giving up after %d attempts", job_id, event,
                    attempt + 1)
        return
    ctx.redis.zadd(DUE, {f"{job_id}:{event}:{attempt + 1}": time.time() + schedule[attempt]})


def send_due(ctx: ControlContext) -> int:
    """Send the deliveries whose retry is due (called by the reconciler); returns how many."""
    due = ctx.redis.zrangebyscore(DUE, 0, time.time())
    sent = 0
    for entry in due:
        if ctx.redis.zrem(DUE, entry):  # one reconciler wins each entry
            job_id, event, attempt = entry.rsplit(":", 2)
            send_control(ctx.sender, DELIVER_WEBHOOK, job_id, event, int(attempt))
            sent += 1
    return sent
