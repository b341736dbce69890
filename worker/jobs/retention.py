"""The retention sweep (Celery beat): jobs whose results expired lose their storage objects
and Redis keys, and leave a tombstone, so their routes answer `410 expired` for
`SALIENCY_TOMBSTONE_TTL_S` (then `404`)."""

from __future__ import annotations

import logging
import time

from shared.storage.keys import JobKeys
from worker.jobs.context import WorkerContext
from worker.jobs.retry import retrying

log = logging.getLogger(__name__)


def sweep(ctx: WorkerContext) -> int:
    """Delete every expired job; returns how many."""
    n = 0
    for job_id in ctx.jobs.expired(time.time()):
        job = ctx.jobs.get(job_id)
        if job is not None:
            prefix = JobKeys(job.tenant, job.id).prefix + "/"
            objects = retrying(lambda prefix=prefix: ctx.storage.delete_prefix(prefix),
                               ctx.settings.retry_budget_s, f"deleting {prefix}")
            ctx.jobs.delete(job_id, job.tenant, ctx.settings.tombstone_ttl_s)
            log.info("job %s expired: %d objects deleted", job_id, objects)
            n += 1
        else:
            ctx.jobs.delete(job_id, "", 1)
    return n
