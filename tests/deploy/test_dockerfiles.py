"""The two images: the API's without torch, the worker's on a matching CUDA PyTorch base; both
non-root, configured from the environment, JSON logs, graceful stop. Checked by reading them."""

from __future__ import annotations

import ast
import json
import logging
import re
import runpy
import shlex
import tomllib

import pytest

from .helpers import configmap, container, find

DOCKER = "docker"


def instructions(path):
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args):
    return json.loads(args)


def the(steps, word):
    found = [a for w, a in steps if w == word]
    assert found, word
    return found[-1]


def env_of(steps):
    env = {}
    for word, args in steps:
        if word == "ENV":
            env |= dict(part.split("=", 1) for part in shlex.split(args))
    return env


def base_image(steps):
    args = {k: v for k, _, v in (a.partition("=") for w, a in steps if w == "ARG")}
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], the(steps, "FROM"))


@pytest.fixture(scope="module")
def api(root):
    return instructions(root / DOCKER / "Dockerfile.api")


@pytest.fixture(scope="module")
def worker(root):
    return instructions(root / DOCKER / "Dockerfile.worker")


def pip_installs(steps):
    return [a for w, a in steps if w == "RUN" and "pip install" in a]


def test_api_image_installs_the_project_without_torch(api):
    assert "pytorch" not in base_image(api)
    (install,) = pip_installs(api)
    assert re.search(r"pip install [^&]*(?<![\w\]])\.(\s|$)", install), install
    assert "[worker" not in install and "torch" not in install.split("&&")[0]
    assert "find_spec('torch')" in install  # the build fails if torch came in anyway


def test_worker_image_is_cuda_pytorch_matching_the_pinned_torch(worker, root):
    image = base_image(worker)
    m = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", image)
    assert m, image
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["worker"]
    assert f"torch=={m.group(1)}" in extras  # else pip downloads another torch over it
    (install,) = pip_installs(worker)
    assert '".[worker]"' in install


@pytest.mark.parametrize("name", ["api", "worker"])
def test_images_run_as_a_numeric_non_root_user_the_pods_agree_with(name, request, rendered):
    steps = request.getfixturevalue(name)
    user, _, group = the(steps, "USER").partition(":")
    assert user.isdigit() and int(user) != 0
    pod = find(rendered["gpu"], "Deployment", f"saliency-{name}")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert pod["securityContext"]["runAsGroup"] == int(group or user)


@pytest.mark.parametrize("name", ["api", "worker"])
def test_images_log_json_stop_on_sigterm_under_an_init(name, request):
    steps = request.getfixturevalue(name)
    env = env_of(steps)
    assert env["SALIENCY_LOG_FORMAT"] == "json"
    assert the(steps, "STOPSIGNAL") == "SIGTERM"
    assert exec_form(the(steps, "ENTRYPOINT")) == ["/usr/bin/tini", "--"]
    # No settings baked in beyond container defaults: nothing secret, no broker or storage.
    assert not {"REDIS_URL", "STORAGE_URL", "SALIENCY_API_KEYS"} & set(env)


def test_api_command_serves_the_wsgi_app_with_the_gunicorn_config(api, root):
    command = exec_form(the(api, "CMD"))
    assert command[0] == "gunicorn" and command[-1] == "api.wsgi:app"
    config = command[command.index("--config") + 1]
    assert config == "/opt/saliency/docker/gunicorn.conf.py" and the(api, "WORKDIR") == (
        "/opt/saliency")
    tree = ast.parse((root / "api" / "wsgi.py").read_text())
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    assert "app" in assigned


def test_worker_command_is_the_k8s_worker_command(worker, rendered, root):
    command = exec_form(the(worker, "CMD"))
    assert command[:3] == ["python", "-m", "worker"]
    assert (root / "worker" / "__main__.py").exists()
    assert "--pool=prefork" in command and "--prefetch-multiplier=1" in command
    for overlay in rendered.values():
        args = container(find(overlay, "Deployment", "saliency-worker"), "worker")["args"]
        assert args == command


def test_gunicorn_config_binds_from_settings_and_logs_json(root, monkeypatch, capsys):
    monkeypatch.setenv("SALIENCY_HOST", "0.0.0.0")
    monkeypatch.setenv("SALIENCY_PORT", "8000")
    monkeypatch.setenv("SALIENCY_LOG_FORMAT", "json")
    config = runpy.run_path(str(root / DOCKER / "gunicorn.conf.py"))
    assert config["bind"] == "0.0.0.0:8000"
    assert config["graceful_timeout"] == 30  # the k8s and compose grace periods assume it
    assert config["accesslog"] == "-" and config["errorlog"] == "-"
    formatter = config["logconfig_dict"]["formatters"]["default"]["()"]()
    access = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(s)s",
                               None, None)
    access.args = {"m": "GET", "U": "/healthz", "s": "200", "D": 512}
    line = json.loads(formatter.format(access))
    assert line["method"] == "GET" and line["status"] == "200" and line["path"] == "/healthz"
    error = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, 'say "%s"',
                              ("hi",), None)
    assert json.loads(formatter.format(error))["message"] == 'say "hi"'


def test_dockerignore_keeps_secrets_and_state_out_but_the_package_in(root):
    patterns = {line.strip() for line in (root / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "var", "*.env", "tests", "k8s"} <= patterns
    needed = {"pyproject.toml", "README.md", "api", "worker", "shared", "docker",
              "docker/gunicorn.conf.py"}
    assert not needed & patterns


def test_worker_image_exposes_the_metrics_port_the_deployments_set(worker, rendered, compose):
    port = int(configmap(rendered["gpu"])["SALIENCY_METRICS_PORT"])
    assert the(worker, "EXPOSE").split() == [str(port)]
    assert compose["services"]["worker"]["environment"]["SALIENCY_METRICS_PORT"] == str(port)
