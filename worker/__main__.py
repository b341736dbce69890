"""`python -m worker [celery worker options]`: register built-in models, then consume jobs."""

from __future__ import annotations

import multiprocessing
import sys

from shared.logs import configure_logging
from shared.settings import Settings
from shared.taskqueue import QUEUE
from worker.builtin import BUILTIN_MODELS
from worker.celery_app import make_celery


def main(argv: list[str]) -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    if settings.builtin_models and BUILTIN_MODELS:
        # In a spawned child: the Celery parent forks its pool and must not have imported torch.
        # The target must live in an importable module: spawn cannot find functions of a
        # package's __main__ (multiprocessing skips re-importing `worker.__main__`).
        from worker.pipeline import register_builtins

        proc = multiprocessing.get_context("spawn").Process(target=register_builtins,
                                                            args=(settings,))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            sys.exit("registering the built-in models failed")
    app = make_celery(settings)
    # In JSON mode every line is a log record: no start-up banner on stdout.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    app.worker_main([*quiet, "worker", "--queues", QUEUE, "--concurrency", "1",
                     "--loglevel", "INFO", "--without-gossip", "--without-mingle", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
