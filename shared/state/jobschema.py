"""The job record's layout in Redis, named once: every key of a job, of its chunk ledger and
leases, and of the queues and counters around them; every field of the job's hash; and the
states stored in them.

Python builds every key here and passes it to the Lua scripts as `KEYS`, so no script builds
a key: each declares what it touches, as Redis Cluster requires (Cluster also wants a
script's keys in one hash slot, which would take hash tags in these names). The scripts
receive the states they compare or store as `ARGV`, and name hash fields as `$field`,
filled in from `LUA_NAMES` by `lua` (an unknown name fails at import). Flags are stored as
`1` or `0`. The model records (`shared.state.modelstore`), idempotency keys
(`shared.state.idempotency`), the workers' liveness pings (`worker.tasks`) and the reconciler's
guard against sending a control task twice (`worker.jobs.reconciler`) are records of their own,
named by their owners.
"""

from __future__ import annotations

from enum import StrEnum
from string import Template

from shared.state.redisio import PREFIX


class JobField(StrEnum):
    """The fields of a job's hash."""

    TENANT = "tenant"
    KIND = "kind"
    STATUS = "status"  # a `JobStatus`
    SPEC = "spec"  # `JobSpec.to_json()`, with the `dataset` it names
    LAYOUT = "layout"  # where its items live: an `ItemsLayout`
    MODEL_PIN = "model_pin"  # the model record it was accepted for (`ModelPin.to_json()`)
    CREATED_AT = "created_at"  # ISO 8601
    CREATED_TS = "created_ts"  # unix s, for the latency histogram
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    EXPIRES_AT = "expires_at"  # unix s
    TOTAL = "total"  # items
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # keys of a data set's listing that are not images
    PROGRESS_MS = "progress_ms"  # when it last made progress: the reconciler's stall clock
    PLANNING = "planning"  # flag: a data set is being streamed into chunks
    PLAN_CHUNK = "plan_chunk"  # inputs per plan file of a data-set job
    PLAN_ATTEMPTS = "plan_attempts"
    PHASE = "phase"  # 0: the phase over its items; a kind's later phases count on
    OPEN = "open"  # chunks of the current phase not done
    FENCE = "fence"  # the last fencing token handed out (chunk and control leases)
    FINALIZING = "finalizing"  # flag: the finalizer is to run or running
    FINAL_STATUS = "final_status"  # the status it takes once finalized
    ERROR = "error"
    FIRST_ERROR = "first_error"  # the first failed item's error
    STALLS = "stalls"  # times the reconciler found it without progress
    RERUNS = "reruns"  # item attempts beyond the first
    STEPS_TOTAL = "steps_total"  # a visualization's optimization steps
    STEPS_DONE = "steps_done"
    PROJECTIONS_DUE = "projections_due"  # a top-activations job's projections
    PROJECTIONS_DONE = "projections_done"
    NOTIFY_ATTEMPTS = "notify_attempts"  # JSON list: its webhook's deliveries


class ItemsLayout(StrEnum):
    """Where a job's items live (`shared.state.itemlayout`)."""

    REDIS = "items"  # inputs and records in Redis: upload, inline and visualize jobs
    PLANNED = "shards"  # plan files, rows files and shards: data-set jobs


class ChunkStatus(StrEnum):
    """A chunk in the ledger (`shared.state.chunks`)."""

    PLANNED = "planned"  # waits for planning to end, or for the job's model
    READY = "ready"  # in its tenant's ready list
    SENT = "sent"  # its task is in Celery's queue
    RUNNING = "running"  # a worker holds its lease
    DONE = "done"


# Fields of the `STATS` hash.
ITEMS_DONE = "items_done"
ITEMS_FAILED = "items_failed"
JOBS_BY_STATUS = "jobs:"  # + a status: jobs in it


def jobs_stat(status: str) -> str:
    return JOBS_BY_STATUS + status


# Keys shared by every job.
ACTIVE_JOBS = PREFIX + "active"  # ids of jobs not yet final: what the reconciler examines
EXPIRY = PREFIX + "expiry"  # job id -> when its results expire (unix s)
STATS = PREFIX + "stats"
LATENCY = PREFIX + "stats:job_latency"  # the histogram of submission-to-final times
WEBHOOKS_DUE = PREFIX + "webhooks:due"  # "job:event:attempt" -> when it is due (unix s)
WORKERS = PREFIX + "workers"  # worker name -> last heartbeat (ms), a sorted set
RECONCILERS = PREFIX + "reconcilers"  # the same for the reconciler's process
READY_TENANTS = PREFIX + "dispatch:tenants"  # tenant -> turn: who is served next
TURN = PREFIX + "dispatch:turn"
INFLIGHT = PREFIX + "dispatch:inflight"  # chunk ref -> ms when sent: Celery's window


def ready_key(tenant: str) -> str:
    """A tenant's chunks waiting to be sent, as refs (`chunk_ref`), in order."""
    return f"{PREFIX}dispatch:ready:{tenant}"


def queued_key(tenant: str) -> str:
    """A tenant's items not yet done or failed: its quota (`SALIENCY_MAX_QUEUED_ITEMS`)."""
    return f"{PREFIX}tenant:{tenant}:queued"


def rate_key(tenant: str, kind: str) -> str:
    """A tenant's token bucket for `read` or `submit` requests."""
    return f"{PREFIX}tenant:{tenant}:rate:{kind}"


def tombstone_key(job_id: str) -> str:
    """An expired job's tenant, kept a while so that its id answers `410`."""
    return f"{PREFIX}tomb:{job_id}"


def chunk_ref(job_id: str, start: int) -> str:
    """How the ready lists and the window name a chunk (not a key)."""
    return f"{job_id}:{start}"


def parse_ref(ref: str) -> tuple[str, int]:
    job_id, _, start = ref.partition(":")
    return job_id, int(start)


class RecordKeys:
    """Every Redis key of one job. The ledger's hashes are keyed by chunk start."""

    def __init__(self, job_id: str) -> None:
        base = f"{PREFIX}job:{job_id}"
        self.job_id = job_id
        self.hash = base  # the job's fields (`JobField`)
        self.inputs = base + ":inputs"  # list: an upload or inline job's inputs
        self.items = base + ":items"  # index -> item record (JSON)
        self.done = base + ":done"  # set of indices recorded succeeded
        self.failed = base + ":failed"  # set of indices recorded failed
        self.attempts = base + ":attempts"  # index -> batches started with it
        self.inflight = base + ":inflight"  # chunk start -> indices in flight (JSON)
        self.losses = base + ":losses"  # index -> lost runs it was in flight in
        self.checkpoint = base + ":final"  # the finalizer's steps done
        self.cstop = base + ":cstop"  # chunk start -> its stop
        self.cstate = base + ":cstate"  # -> `ChunkStatus`
        self.cattempts = base + ":cattempts"  # -> runs started
        self.clost = base + ":clost"  # -> runs lost (lease expired)
        self.csent = base + ":csent"  # -> when sent (ms)
        self.cworker = base + ":cworker"  # -> the worker of its last run
        self.cseg = base + ":cseg"  # -> the segment committed (`shared.state.chunks.Segment`)
        self.control = self.lease("ctl")  # the planner's, next phase's or finalizer's lease

    def lease(self, start: int | str) -> str:
        """The lease of chunk `start` (its value: the holder's fencing token)."""
        return f"{PREFIX}lease:{self.job_id}:{start}"

    @property
    def ledger(self) -> tuple[str, ...]:
        """The chunk ledger, without its committed segments."""
        return (self.cstop, self.cstate, self.cattempts, self.clost, self.csent, self.cworker)

    @property
    def run_state(self) -> tuple[str, ...]:
        """What only a job still running needs: the ledger and the item attempts."""
        return (self.attempts, self.inflight, self.losses, *self.ledger)

    @property
    def all(self) -> tuple[str, ...]:
        """Every key of the job but its leases."""
        return (self.hash, self.inputs, self.items, self.done, self.failed, self.attempts,
                self.inflight, self.losses, self.checkpoint, *self.ledger, self.cseg)


LUA_NAMES = {**{f.value: f.value for f in JobField}, "items_done": ITEMS_DONE,
             "items_failed": ITEMS_FAILED, "jobs_by_status": JOBS_BY_STATUS}


def lua(source: str) -> str:
    """A script with its `$names` filled in from `LUA_NAMES`."""
    return Template(source).substitute(LUA_NAMES)
