"""The API refuses to start where it would be exposed unprotected: bound beyond loopback with
no API keys (unless `SALIENCY_ALLOW_ANONYMOUS=1` says that is meant), or without
`SALIENCY_SIGNING_KEY` (its signed URLs would use a key nobody configured)."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from waiting import wait_until

from devstack import ROOT, StartError, free_port, start_api
from security.conftest import LOGS, SECRETS

KEYS = {"SALIENCY_API_KEYS": f"{SECRETS['alice_key']}:alice:admin"}
SIGNING = {"SALIENCY_SIGNING_KEY": SECRETS["signing_key"]}


def _env(sec, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in sec.env.items()
           if k not in ("SALIENCY_API_KEYS", "SALIENCY_SIGNING_KEY")}
    return {**env, **extra}


@pytest.mark.parametrize("case", [
    ("no keys", {**SIGNING}, "SALIENCY_API_KEYS"),
    ("keys but no signing key", {**KEYS}, "SALIENCY_SIGNING_KEY"),
    ("neither", {}, "SALIENCY_SIGNING_KEY"),
], ids=lambda c: c[0])
def test_beyond_loopback_the_api_refuses_to_start_unprotected(sec, case):
    _, extra, named = case
    with pytest.raises(StartError) as refused:
        start_api(_env(sec, **extra), LOGS, host="0.0.0.0")
    assert "exited" in str(refused.value) and named in str(refused.value)


@pytest.mark.parametrize("extra", [{**KEYS, **SIGNING}, {"SALIENCY_ALLOW_ANONYMOUS": "1"}],
                         ids=["keys and a signing key", "anonymous access said to be meant"])
def test_beyond_loopback_the_api_starts_when_protected_or_told_so(sec, extra):
    api = start_api(_env(sec, **extra), LOGS, host="0.0.0.0")
    try:
        assert api.proc.poll() is None
    finally:
        api.stop()


def test_a_bind_beyond_loopback_on_gunicorns_command_line_is_refused_too(sec, tmp_path):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "--bind",
             f"0.0.0.0:{port}", "--workers", "1", "--worker-tmp-dir", "/tmp", "api.wsgi:app"],
            env=_env(sec), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        # It refuses to start, or it serves: anonymously, on every interface.
        with contextlib.suppress(AssertionError):  # still starting: judged below
            wait_until("the API exited or serving", lambda: proc.poll() is not None
                       or _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=30)
        assert proc.poll() is not None, "the API serves on 0.0.0.0 with no keys"
        assert "SALIENCY_API_KEYS" in log.read_text(errors="replace")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
