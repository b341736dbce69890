"""`python -m worker [celery worker options]`: consume jobs; `python -m worker reconciler
[celery worker options]`: the reconciler's own consumer (one task at a time, its queue only);
`python -m worker beat`: the one scheduler process (it sends the reconciler, the retention
sweep and webhook retries)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from shared.logs import configure_logging
from shared.settings import Settings
from worker.celery_app import ROLES, make_celery, own_queue
from worker.models.offline import hf_offline


def _hostname(argv: list[str]) -> str:
    """The worker's name as Celery will expand it (`--hostname`, `%h` for the host)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--hostname="):
            name = arg.split("=", 1)[1]
        elif arg in ("--hostname", "-n") and i + 1 < len(argv):
            name = argv[i + 1]
        else:
            continue
        return name.replace("%h", socket.gethostname()).replace("%n", socket.gethostname())
    return f"celery@{socket.gethostname()}"


def main(argv: list[str]) -> None:
    hf_offline()  # before anything imports huggingface_hub: nothing is ever downloaded
    settings = Settings.from_env()
    configure_logging(settings)
    role = "reconciler" if argv[:1] == ["reconciler"] else "worker"
    app = make_celery(settings, role)
    # In JSON mode every line is a log record: no start-up banner on stdout.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    if argv[:1] == ["beat"]:
        # Its schedule file lives there; the worker may not have made the folder yet.
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        app.start([*quiet, "beat", "--loglevel", "INFO", *argv[1:]])
        return
    if role == "reconciler":
        argv = argv[1:]
    if not any(a.startswith("--hostname") or a == "-n" for a in argv):
        argv = [*argv, "--hostname", f"{role}-{os.getpid()}@%h"]
    queues = ",".join([*ROLES[role][0], own_queue(_hostname(argv))])
    app.worker_main([*quiet, "worker", "--queues", queues, "--concurrency", "1",
                     "--loglevel", "INFO", "--without-gossip", "--without-mingle", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
