"""Every Lua script touches only the keys it was given (as Redis Cluster requires): each
script's paths run under Redis `MONITOR`, and every key named by a command run inside a
script (as the server itself finds keys: `COMMAND GETKEYS`) was among the `KEYS` of the
`EVALSHA` that ran it."""

from __future__ import annotations

import ast
import itertools
import re

import pytest
import redis
from redis.commands.core import Script

from api import ratelimit
from shared.results.records import InputSource, ItemRecord
from shared.spec.job import job_spec_from_json, parse_job_spec
from shared.state.chunks import Chunks, Lease, Segment
from shared.state.fairqueue import FairQueue
from shared.state.jobs import NewJob
from shared.state.jobschema import READY_TENANTS, WORKERS, ChunkStatus, rate_key
from shared.state.jobstore import JobStore
from shared.state.redisio import now_ms
from shared.status import ItemStatus, JobStatus
from shared.taskqueue import chunk_ranges

DB = 12
LINE = re.compile(r'^[\d.]+ \[(\d+) ([^\]]*)\] (.*)$')
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """The commands a Redis server runs, as `MONITOR` reports them, between two markers."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.monitor = client.monitor()
        self.monitor.__enter__()
        self.marks = itertools.count()

    def close(self) -> None:
        self.monitor.__exit__(None, None, None)

    def during(self, action) -> list[tuple[str, list[str]]]:
        """(who, args) of each command of database `DB` that `action()` caused: who is `lua`
        for a command run inside a script."""
        mark = f"mark-{next(self.marks)}"
        action()
        self.client.echo(mark)
        out = []
        while True:
            raw = self.monitor.connection.read_response()
            line = raw.decode() if isinstance(raw, bytes) else raw
            db, who, rest = LINE.match(line).groups()
            args = [ast.literal_eval(f'b"{a}"').decode() for a in ARG.findall(rest)]
            if args == ["ECHO", mark] or args == ["echo", mark]:
                return out
            if int(db) == DB:
                out.append((who, args))


def keys_of(client: redis.Redis, args: list[str]) -> set[str]:
    """The keys of a command, as the server finds them."""
    try:
        return set(client.command_getkeys(*args))
    except redis.ResponseError:  # a command without keys
        return set()


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(f"{redis_server}/{DB}", decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def watch(r):
    """`watch(action)` runs `action` under MONITOR and checks each script's keys; it returns
    the SHA1 of every script that ran."""
    monitor = Monitor(r)
    ran: set[str] = set()

    def check(action) -> None:
        commands = monitor.during(action)
        declared, touched = set(), set()
        for who, args in commands:
            if args[0].upper() in ("EVALSHA", "EVAL"):
                declared |= keys_of(r, args)
                ran.add(args[1])
            elif who == "lua":
                touched |= keys_of(r, args)
        assert touched <= declared, f"keys not passed in KEYS: {sorted(touched - declared)}"

    check.ran = ran
    yield check
    monitor.close()


def _scripts(*owners) -> dict[str, str]:
    """SHA1 -> name of every script the owners registered."""
    return {script.sha: f"{type(owner).__name__}.{name}" for owner in owners
            for name, script in vars(owner).items() if isinstance(script, Script)}


def _record(index: int, ok: bool = True, status: ItemStatus | None = None) -> ItemRecord:
    status = status or (ItemStatus.SUCCEEDED if ok else ItemStatus.FAILED)
    return ItemRecord(index, status, f"{index}.png", error=None if ok else "broken")


def _create(r, jobs: JobStore, chunks: Chunks, job: NewJob, ranges, watch) -> None:
    def create() -> None:
        pipe = r.pipeline(transaction=True)
        jobs.create(job, pipe)
        chunks.add(pipe, job.id, ranges, ChunkStatus.PLANNED)
        pipe.execute()

    watch(create)


def test_every_script_touches_only_the_keys_it_is_given(r, watch):
    jobs, chunks, fair = JobStore(r), Chunks(r), FairQueue(r, lease_s=30)
    take = r.register_script(ratelimit._TAKE)
    r.zadd(WORKERS, {"w1": now_ms(), "w2": now_ms()})
    inputs = tuple(InputSource(name=f"{i}.png", key=f"k/{i}") for i in range(10))

    # An upload job of two tenants' worth of chunks, sent, run, split, requeued and finished.
    _create(r, jobs, chunks, NewJob("a", "acme", parse_job_spec({"model": "m"}), inputs=inputs),
            chunk_ranges(10, 4), watch)
    _create(r, jobs, chunks, NewJob("b", "bob", parse_job_spec({"model": "m"}), inputs=inputs),
            chunk_ranges(10, 4), watch)
    watch(lambda: chunks.activate("a"))
    watch(lambda: chunks.activate("b"))
    r.zadd(READY_TENANTS, {"ghost": 0})  # a tenant left in line with nothing ready
    watch(lambda: fair.pop(limit=2))
    watch(lambda: fair.pop(limit=2))  # the window is full
    leases = {}

    def acquire(job_id: str, start: int) -> None:
        lease = chunks.acquire(job_id, start, "w1", 30)
        if isinstance(lease, Lease):
            leases[job_id, start] = lease

    watch(lambda: acquire("a", 0))  # sent: the job starts
    watch(lambda: acquire("a", 0))  # leased
    watch(lambda: acquire("a", 8))  # ready, taken from the ready list
    lease = leases["a", 0]
    watch(lambda: chunks.renew(lease.key, lease.token, 30))
    watch(lambda: jobs.record_item(lease, _record(0)))
    watch(lambda: jobs.record_item(lease, _record(1, ok=False)))
    watch(lambda: jobs.record_item(lease, _record(1)))  # moves between the sets
    watch(lambda: jobs.item_progress(lease, _record(2, status=ItemStatus.PENDING)))
    watch(lambda: jobs.item_progress(lease, _record(1, status=ItemStatus.PENDING)))
    watch(lambda: chunks.commit(lease, 2, to_back=True))  # split: the rest is ready first
    watch(lambda: chunks.commit(lease, 2))  # fenced
    watch(lambda: jobs.record_item(lease, _record(2)))  # fenced
    watch(lambda: acquire("a", 2))
    lease = leases["a", 2]
    watch(lambda: chunks.commit(lease, lease.start))  # gave back at once
    watch(lambda: acquire("a", 2))
    lease = leases["a", 2]
    r.pexpire(lease.key, 1)
    watch(lambda: chunks.requeue("a", 2, ChunkStatus.RUNNING, silent_ms=10_000))
    watch(lambda: chunks.requeue("a", 2, ChunkStatus.RUNNING))  # not running any more
    watch(lambda: fair.pop(limit=10))
    watch(lambda: chunks.requeue("a", 2, ChunkStatus.SENT, now_ms() + 1))
    watch(lambda: acquire("a", 2))
    lease = leases["a", 2]
    segment = Segment(2, 4, lease.token, "shard", "rows")
    watch(lambda: chunks.commit(lease, 4, segment=segment, done=1, failed=1,
                                first_error="broken"))
    lease = leases["a", 8]
    watch(lambda: chunks.release(lease))
    watch(lambda: acquire("a", 2))  # done
    watch(lambda: acquire("b", 0))  # sent
    lease = leases["b", 0]
    watch(lambda: chunks.commit(lease, lease.stop))

    # Control: planning, phases and the finalizer.
    token = jobs.take_control("a", 30)
    watch(lambda: jobs.take_control("a", 30))  # held
    watch(lambda: jobs.record_step("a", token, {"results": "1"}))
    watch(lambda: jobs.record_step("a", token + 1, {"report": "1"}))  # fenced

    def next_phase() -> None:
        pipe = r.pipeline(transaction=True)
        chunks.reset("b", keep_segments=True, pipe=pipe)
        chunks.add(pipe, "b", chunk_ranges(2, 1), ChunkStatus.PLANNED)
        jobs.enter_phase(pipe, "b", 1)
        pipe.execute()

    watch(next_phase)
    watch(lambda: chunks.activate("b"))
    watch(lambda: jobs.request_final("b", JobStatus.CANCELLED, "cancelled by the client"))
    watch(lambda: jobs.request_final("b", JobStatus.FAILED))  # too late
    watch(lambda: fair.pop(limit=10))  # its chunks are dropped, not sent
    watch(lambda: acquire("b", 1))  # final
    watch(lambda: jobs.finish("b", JobStatus.CANCELLED, 60, "cancelled", 30))
    watch(lambda: jobs.finish("b", JobStatus.CANCELLED, 60))  # not finalizing any more

    spec = job_spec_from_json({"model": "m", "dataset": {"manifest": "s3://d/m.jsonl"}})
    for job_id, total in (("d1", 3), ("d2", 10**6)):
        _create(r, jobs, chunks, NewJob(job_id, "acme", spec), [], watch)
        watch(lambda job_id=job_id: chunks.reset(job_id))
        watch(lambda job_id=job_id: chunks.add(None, job_id, [(0, 3)], ChunkStatus.PLANNED))
        job = jobs.get(job_id)
        watch(lambda job=job, total=total: jobs.end_planning(job, total, 0, 1000, "quota"))
    watch(lambda: take(keys=[rate_key("acme", "read")], args=[10, 10, now_ms(), 1]))

    registered = _scripts(jobs, chunks, fair)
    registered[take.sha] = "ratelimit._TAKE"
    assert {name for sha, name in registered.items() if sha not in watch.ran} == set()
