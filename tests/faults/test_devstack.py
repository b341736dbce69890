"""`make run` (`python -m devstack`) as a supervisor: a dead worker is started again while the
API keeps answering; killed outright, it leaves no child behind holding a port; and its
Redis keeps jobs and models across a restart (append-only file). Each case runs it in a
temporary data directory on a free API port.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from e2e.helpers import image_bytes
from stacks import Devstack
from waiting import job_final, wait_until

from devstack import free_port, port_is_free
from faults.stack import MODEL_SPEC

SETTINGS = {"SALIENCY_BUILTIN_MODELS": "0", "SALIENCY_DEVICE": "cpu",
            "SALIENCY_TORCH_THREADS": "1", "SALIENCY_LEASE_S": "6",
            "SALIENCY_RECONCILE_EVERY_S": "1"}


def _start(data_dir: Path, port: int) -> Devstack:
    return Devstack(data_dir, port, **SETTINGS)


def _procs() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # it exited meanwhile
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        out[int(entry.name)] = (int(ppid), state, cmd)
    return out


def _descendants(pid: int) -> dict[int, str]:
    procs, found, todo = _procs(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, state, cmd) in procs.items():
            if ppid == parent and state != "Z" and child not in found:
                found[child] = cmd
                todo.append(child)
    return found


def _alive(pids) -> list[int]:
    procs = _procs()
    return [p for p in pids if p in procs and procs[p][1] != "Z"]


def _job_on_tiny_model(url: str, weights: Path) -> str:
    response = requests.post(
        f"{url}/v1/models", files={"spec": (None, json.dumps(MODEL_SPEC), "application/json"),
                                   "weights": ("w.safetensors", io.BytesIO(weights.read_bytes()))},
        timeout=60)
    assert response.status_code in (201, 409), response.text
    response = requests.post(f"{url}/v1/jobs", files=[
        ("spec", (None, json.dumps({"model": MODEL_SPEC["name"], "outputs": ["npy"]}),
                  "application/json")),
        ("images", ("one.png", io.BytesIO(image_bytes(7, size=32))))], timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.mark.chaos
def test_make_run_restarts_a_dead_worker_while_the_api_answers(tmp_path, tiny_weights, figures):
    stack = _start(tmp_path / "var", free_port())
    try:
        (worker,) = [p for p, cmd in _descendants(stack.proc.pid).items()
                     if "-m worker" in cmd and "beat" not in cmd and "reconciler" not in cmd
                     and _procs()[p][0] == stack.proc.pid]
        log = stack.data_dir / "log" / "worker.log"
        readies = log.read_text(errors="replace").count(" ready.")
        os.killpg(worker, signal.SIGKILL)
        killed = time.monotonic()
        answers = []

        def worker_ready() -> bool:  # the API answers until the new worker is ready
            answers.append(requests.get(f"{stack.url}/healthz", timeout=10).status_code)
            return log.read_text(errors="replace").count(" ready.") > readies

        wait_until("a new worker ready", worker_ready, timeout=240, every=0.2)
        restarted_s = time.monotonic() - killed
        job = job_final(requests, stack.url, _job_on_tiny_model(stack.url, tiny_weights),
                        timeout=300)
        figures(case="make run: worker kill -9", restarted_s=round(restarted_s, 1),
                healthz_answers=len(answers), non_200=len([a for a in answers if a != 200]))
        assert stack.proc.poll() is None  # the supervisor itself carried on
    finally:
        stack.stop()
    assert set(answers) == {200}, answers
    assert job["status"] == "succeeded"  # run by the restarted worker


@pytest.mark.chaos
@pytest.mark.parametrize("when", ["running", "mid-shutdown"])
def test_make_run_killed_outright_leaves_no_child_holding_a_port(tmp_path, when, figures):
    stack = _start(tmp_path / "var", free_port())
    children = _descendants(stack.proc.pid)
    # Redis, the API and its workers, a worker, the reconciler, beat
    assert len(children) >= 5, children
    if when == "mid-shutdown":  # Ctrl-C, then killed while it stops its children one by one
        stack.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    stack.proc.send_signal(signal.SIGKILL)
    stack.proc.wait()
    killed = time.monotonic()
    with contextlib.suppress(AssertionError):  # those left are named below
        wait_until("every child gone", lambda: not _alive(children), timeout=90)
    left = {p: children[p] for p in _alive(children)}
    figures(case=f"make run kill -9 ({when})", children=len(children), left=len(left),
            all_gone_s=round(time.monotonic() - killed, 1))
    for pid in left:  # do not leave them to the rest of the session
        os.kill(pid, signal.SIGKILL)
    assert left == {}
    assert port_is_free(stack.port) and port_is_free(stack.redis_port)


@pytest.mark.chaos
def test_make_run_keeps_jobs_and_models_across_a_restart(tmp_path, tiny_weights, figures):
    data_dir, port = tmp_path / "var", free_port()
    stack = _start(data_dir, port)
    try:
        job_id = _job_on_tiny_model(stack.url, tiny_weights)
        first = job_final(requests, stack.url, job_id, timeout=300)
    finally:
        stack.stop()
    stack = _start(data_dir, port)
    try:
        again = requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10)
        model = requests.get(f"{stack.url}/v1/models/{MODEL_SPEC['name']}", timeout=10)
        items = requests.get(f"{stack.url}/v1/jobs/{job_id}/items", timeout=10)
        npy = requests.get(items.json()["items"][0]["outputs"][0]["npy"], timeout=10)
    finally:
        stack.stop()
    figures(case="make run restarted: job and model kept", job=again.status_code,
            model=model.json().get("status"))
    assert first["status"] == "succeeded"
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    assert model.status_code == 200 and model.json()["status"] == "ready"
    assert npy.status_code == 200 and npy.content.startswith(b"\x93NUMPY")
