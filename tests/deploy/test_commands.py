"""The commands compose and the overlays run (`python -m worker ...`) become command lines that
Celery's own CLI accepts, with the JSON logs the deployments set: a bad option would stop the
container at once, and restart it forever."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli

from shared.taskqueue import QUEUES, RECONCILE_QUEUE

from .helpers import configmap, container, find, interpolate


def celery_argv(monkeypatch, env: dict[str, str], args: list[str]) -> list[str]:
    """What `python -m worker <args>` hands to Celery, with `env` as its environment."""
    import worker.__main__ as entry

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = []

    class App:
        def start(self, argv):
            calls.append(list(argv))

        worker_main = start

    monkeypatch.setattr(entry, "make_celery", lambda settings, role="worker": App())
    monkeypatch.setattr(entry, "configure_logging", lambda settings: None)
    entry.main(list(args))
    (argv,) = calls
    return argv


def parse(argv: list[str]):
    """Parse `argv` as `celery` would (global options, a command, its options); run nothing."""
    at = next(i for i, arg in enumerate(argv) if arg in celery_cli.commands)
    obj = CLIContext(app=Celery(set_as_current=False), no_color=True, workdir=None, quiet=False)
    top = celery_cli.make_context("celery", argv[:at], obj=obj)
    return celery_cli.commands[argv[at]].make_context(argv[at], argv[at + 1:], parent=top)


def test_the_worker_command_of_the_overlays_and_the_image_parses(rendered, monkeypatch):
    objects = rendered["gpu"]
    args = container(find(objects, "Deployment", "saliency-worker"), "worker")["args"]
    assert args[:3] == ["python", "-m", "worker"]
    env = configmap(objects)
    assert env["SALIENCY_LOG_FORMAT"] == "json"
    parsed = parse(celery_argv(monkeypatch, env, args[3:]))
    assert parsed.info_name == "worker"
    assert set(QUEUES) <= set(parsed.params["queues"])
    assert parsed.params["concurrency"] == 1


@pytest.mark.parametrize("where", ["k8s", "compose"])
def test_the_reconciler_consumes_its_own_queue_only_one_task_at_a_time(
        where, rendered, compose, monkeypatch):
    if where == "k8s":
        objects = rendered["gpu"]
        c = container(find(objects, "Deployment", "saliency-reconciler"), "reconciler")
        args, env = c["args"], configmap(objects)
    else:
        service = compose["services"]["reconciler"]
        args = service["command"]
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
    assert args[:4] == ["python", "-m", "worker", "reconciler"]
    parsed = parse(celery_argv(monkeypatch, env, args[3:]))
    assert parsed.info_name == "worker" and parsed.params["concurrency"] == 1
    # Its queue, and its own (the watchdog's pings); none of the workers' queues.
    queues = parsed.params["queues"]
    assert queues[0] == RECONCILE_QUEUE and len(queues) == 2
    assert queues[1].startswith("saliency.w.") and not set(QUEUES) & set(queues)
    assert RECONCILE_QUEUE not in QUEUES


@pytest.mark.parametrize("where", ["k8s", "compose"])
def test_the_scheduler_command_parses(where, rendered, compose, monkeypatch):
    objects = rendered["gpu"]
    if where == "k8s":
        args = container(find(objects, "Deployment", "saliency-beat"), "beat")["args"]
        env = configmap(objects)
    else:
        args = compose["services"]["beat"]["command"]
        env = {k: interpolate(str(v))
               for k, v in compose["services"]["beat"]["environment"].items()}
    assert args[:3] == ["python", "-m", "worker"] and env["SALIENCY_LOG_FORMAT"] == "json"
    parsed = parse(celery_argv(monkeypatch, env, args[3:]))
    assert parsed.info_name == "beat"
