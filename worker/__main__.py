"""`python -m worker [celery worker options]`: register built-in models, then consume jobs."""

from __future__ import annotations

import logging
import multiprocessing
import sys

from shared.settings import Settings
from shared.taskqueue import QUEUE
from worker.builtin import BUILTIN_MODELS
from worker.celery_app import make_celery


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
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
    app.worker_main(["worker", "--queues", QUEUE, "--concurrency", "1", "--loglevel", "INFO",
                     "--without-gossip", "--without-mingle",
                     *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
