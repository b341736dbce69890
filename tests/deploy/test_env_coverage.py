"""Every environment variable the code reads is set (or defaulted) wherever the service runs:
in each docker-compose service that runs it and in each Kubernetes overlay's containers."""

from __future__ import annotations

import pytest

from shared.settings import Settings

from .conftest import OVERLAYS
from .helpers import container, find, interpolate

COMPOSE_SERVICES = ("api", "worker", "worker-cpu", "reconciler", "beat")
K8S_CONTAINERS = (("saliency-api", "api"), ("saliency-worker", "worker"),
                  ("saliency-reconciler", "reconciler"), ("saliency-beat", "beat"))


def test_scan_finds_what_settings_reads(code_variables):
    """The scanner sees Settings.from_env's helpers (`_int(env, "NAME", ...)`) too."""
    assert {"SALIENCY_PORT", "SALIENCY_ACCEPTED_FORMATS", "SALIENCY_DEVICE",
            "SALIENCY_LOG_FORMAT", "S3_ENDPOINT_URL"} <= set(code_variables)


@pytest.mark.parametrize("service", COMPOSE_SERVICES)
def test_compose_service_sets_every_variable_the_code_reads(compose, code_variables, service):
    environment = compose["services"][service]["environment"]
    missing = sorted(set(code_variables) - set(environment))
    assert not missing, {name: code_variables[name] for name in missing}
    env = {k: interpolate(str(v)) for k, v in environment.items()}
    settings = Settings.from_env(env)  # every value parses, with compose's defaults
    assert settings.log_format == "json"
    assert settings.storage_url.startswith("s3://") and settings.s3_endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("deployment", "name"), K8S_CONTAINERS)
def test_k8s_container_gets_every_variable_the_code_reads(
        rendered, code_variables, secret_keys, overlay, deployment, name):
    objects = rendered[overlay]
    c = container(find(objects, "Deployment", deployment), name)
    provided: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            provided |= find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            provided |= dict.fromkeys(secret_keys, "")
    provided |= {e["name"]: e.get("value", "") for e in c.get("env", [])}
    missing = sorted(set(code_variables) - set(provided))
    assert not missing, {v: code_variables[v] for v in missing}
    settings = Settings.from_env(provided)
    assert settings.log_format == "json" and settings.host == "0.0.0.0"
    assert settings.storage_url.startswith("s3://")
