"""`Client`/`Job` and `AsyncClient`/`AsyncJob` offer the same public methods with the same
signatures (an `Async` name in an annotation read as its sync twin), coroutines exactly
where the sync one does I/O; the few deliberate differences are named here."""

from __future__ import annotations

import inspect
import re

import pytest
from saliency_client import AsyncClient, AsyncJob, Client, Job

PAIRS = [(Client, AsyncClient), (Job, AsyncJob)]
CONTEXT = {"__enter__", "__exit__", "__aenter__", "__aexit__"}
NO_IO = {"page_url", "report_url", "job"}  # plain methods in both
DIFFERENCES = {
    ("Job", "progress"): "sync only: it refreshes when nothing was fetched yet",
    ("Job", "status"): "the sync one refreshes when nothing was fetched yet, the async one "
                       "answers None: a property cannot await",
    ("Job", "wait"): "progress bar on by default for one job, off for the many awaited at once",
    ("Job", "download"): "`workers` threads against `concurrency` tasks",
}


def public(cls: type) -> dict[str, object]:
    return {name: inspect.getattr_static(cls, name) for name in dir(cls)
            if (not name.startswith("_") or name == "__init__") and name not in CONTEXT}


def shape(member: object) -> str:
    """The member as a signature (or `property`), `Async` names read as their sync twins."""
    if isinstance(member, property):
        return f"property -> {inspect.signature(member.fget).return_annotation}"
    return re.sub(r"\bAsync", "", str(inspect.signature(member)))


def differences(sync: type, aio: type) -> set[tuple[str, str]]:
    ours, theirs = public(sync), public(aio)
    return {(sync.__name__, name) for name in ours.keys() | theirs.keys()
            if name not in ours or name not in theirs
            or shape(ours[name]) != shape(theirs[name])}


def test_the_sync_and_async_clients_differ_only_where_named():
    found = set().union(*(differences(sync, aio) for sync, aio in PAIRS))
    assert found == set(DIFFERENCES)


@pytest.mark.parametrize(("sync", "aio"), PAIRS, ids=["client", "job"])
def test_async_methods_are_coroutines_where_the_sync_ones_do_io(sync, aio):
    for name, member in public(aio).items():
        if isinstance(member, property) or name == "__init__":
            continue
        twin = public(sync)[name]
        assert not inspect.iscoroutinefunction(twin), name
        if name in NO_IO:
            assert not inspect.iscoroutinefunction(member), name
        elif name == "items":
            assert inspect.isasyncgenfunction(member)
        else:
            assert inspect.iscoroutinefunction(member), name
