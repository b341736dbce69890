"""The planner alone on one data set, in a fresh process: its peak memory.

    python bench/planner.py REDIS_URL STORAGE_DIR DATASET_ROOT DATA_DIR DATASET_JSON

Plans a data-set job (`dataset` as JSON) with the reconciler's connections only (no torch:
planning needs none) and prints one JSON line: the items planned, the chunks, and the peak
resident set of the process (VmHWM: unlike `ru_maxrss`, not inherited from the parent that
started it). Run by `bench/dataset.py` and by the planner's memory test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.settings import Settings  # noqa: E402
from shared.spec.job import job_spec_from_json  # noqa: E402
from shared.state.jobs import NewJob  # noqa: E402
from worker.jobs.context import ControlContext  # noqa: E402
from worker.jobs.plans import plan_job  # noqa: E402


def main(redis_url: str, storage: str, root: str, data_dir: str, dataset: str) -> None:
    settings = Settings(redis_url=redis_url, storage_url=Path(storage).as_uri(),
                        dataset_roots=(Path(root).as_uri(),), data_dir=data_dir,
                        builtin_models=False)
    ctx = ControlContext.create(settings)
    spec = job_spec_from_json({"model": "m", "dataset": json.loads(dataset)})
    job = NewJob("p" * 32, "default", spec)
    pipe = ctx.redis.pipeline()
    ctx.jobs.create(job, pipe)
    pipe.execute()
    plan_job(ctx, job.id)
    planned = ctx.jobs.get(job.id)
    print(json.dumps({"total": planned.total, "error": planned.error,
                      "chunks": len(ctx.chunks.states(job.id)),
                      "peak_rss_mb": peak_rss() / 2**20}))


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LookupError("VmHWM")


if __name__ == "__main__":
    main(*sys.argv[1:6])
