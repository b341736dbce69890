"""The manifests fit together and with the code: selectors, ports, probes, scaling, secrets."""

from __future__ import annotations

import re

import pytest

from shared.settings import Settings
from shared.taskqueue import QUEUE

from .conftest import OVERLAYS
from .helpers import container, find, pod_spec

WORKLOADS = ("Deployment", "StatefulSet")


def workloads(objects):
    return [o for o in objects if o["kind"] in WORKLOADS]


def configmap(objects):
    return find(objects, "ConfigMap", "saliency-config")["data"]


def selects(selector, obj):
    labels = obj["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_services_ingress_and_scalers_find_their_targets(rendered, overlay):
    objects = rendered[overlay]
    for obj in workloads(objects):
        assert selects(obj["spec"]["selector"]["matchLabels"], obj), obj["metadata"]["name"]
    for service in (o for o in objects if o["kind"] == "Service"):
        (target,) = [w for w in workloads(objects) if selects(service["spec"]["selector"], w)]
        ports = {p.get("name") for c in pod_spec(target)["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        assert [w for w in workloads(objects) if selects(pdb["spec"]["selector"]["matchLabels"], w)]
    ingress = find(objects, "Ingress", "saliency-api")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = find(objects, "Service", backend["name"])
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    settings = Settings.from_env(configmap(objects))
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.removesuffix("m")) * 2**20 >= max(settings.max_request_bytes,
                                                       settings.max_model_bytes)
    hpa = find(objects, "HorizontalPodAutoscaler", "saliency-api")
    scaled = find(objects, "ScaledObject", "saliency-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "saliency-api"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "saliency-worker"
    # A Deployment owned by an autoscaler must not pin its replica count on every apply.
    for name in ("saliency-api", "saliency-worker"):
        assert "replicas" not in find(objects, "Deployment", name)["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_probes_hpa_and_graceful_stop(rendered, overlay):
    objects = rendered[overlay]
    api = find(objects, "Deployment", "saliency-api")
    c = container(api, "api")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["port"] in {p["name"] for p in c["ports"]}
    assert {p["containerPort"] for p in c["ports"]} == {int(configmap(objects)["SALIENCY_PORT"])}
    hpa = find(objects, "HorizontalPodAutoscaler", "saliency-api")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and c["resources"]["requests"]["cpu"]
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = 30  # docker/gunicorn.conf.py graceful_timeout; test_dockerfiles pins it
    assert pod_spec(api)["terminationGracePeriodSeconds"] > pre_stop + graceful


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_liveness_pings_this_celery_node(rendered, overlay):
    worker = container(find(rendered[overlay], "Deployment", "saliency-worker"), "worker")
    assert worker["args"][:3] == ["python", "-m", "worker"]
    assert "--hostname=celery@%h" in worker["args"]
    # prefork: the main process answers pings while the pool child runs a batch.
    assert "--pool=prefork" in worker["args"]
    command = worker["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]  # exec probes run no shell: $HOSTNAME needs one
    assert re.search(r'inspect ping\s+--destination "celery@\$HOSTNAME"', command[2])
    assert '--broker "$REDIS_URL"' in command[2]
    assert worker["livenessProbe"]["timeoutSeconds"] > 10  # the ping's own --timeout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_finishes_its_task_before_the_grace_period_ends(rendered, overlay):
    objects = rendered[overlay]
    worker = find(objects, "Deployment", "saliency-worker")
    env = {**configmap(objects), **{e["name"]: e["value"] for e in
                                    container(worker, "worker").get("env", [])}}
    settings = Settings.from_env(env)
    # A task never outlives its hard time limit, so a warm shutdown always completes.
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > settings.task_time_limit_s
    assert settings.task_time_limit_s < settings.visibility_timeout_s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_worker_on_the_celery_queue(rendered, overlay):
    objects = rendered[overlay]
    spec = find(objects, "ScaledObject", "saliency-worker")["spec"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == QUEUE
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert spec["cooldownPeriod"] > 0
    # The address KEDA polls is the Redis the workers use (redis://HOST:PORT/DB).
    redis_url = configmap(objects)["REDIS_URL"]
    m = re.fullmatch(r"redis://([^:/]+):(\d+)/(\d+)", redis_url)
    host, port, db = m.groups()
    namespace = find(objects, "Service", host)["metadata"]["namespace"]
    assert trigger["metadata"]["address"] == f"{host}.{namespace}.svc.cluster.local:{port}"
    assert trigger["metadata"]["databaseIndex"] == db


def test_gpu_overlay_requests_one_gpu_per_worker_and_cpu_overlay_none(rendered):
    gpu = container(find(rendered["gpu"], "Deployment", "saliency-worker"), "worker")
    assert str(gpu["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert {"name": "SALIENCY_DEVICE", "value": "cuda"} in gpu["env"]
    tolerations = pod_spec(find(rendered["gpu"], "Deployment", "saliency-worker"))["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    cpu = container(find(rendered["cpu"], "Deployment", "saliency-worker"), "worker")
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert {"name": "SALIENCY_DEVICE", "value": "cpu"} in cpu["env"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_persists_to_a_volume_claim(rendered, overlay):
    redis = find(rendered[overlay], "StatefulSet", "redis")
    args = container(redis, "redis")["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mounts = container(redis, "redis")["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": args[args.index("--dir") + 1]} in mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_with_pinned_images(rendered, overlay):
    for obj in workloads(rendered[overlay]):
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert ":" in c["image"] and not c["image"].endswith(":latest")
            assert c["resources"]["requests"], c["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_committed(rendered, overlay, root, secret_keys):
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] == "Secret"]
    refs = set()
    for obj in workloads(objects):
        for c in pod_spec(obj)["containers"]:
            refs |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
            refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                     if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"saliency-secrets"}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SALIENCY_API_KEYS"} <= secret_keys
    example = (root / "k8s" / "secrets.env.example").read_text().splitlines()
    assert all(line.endswith("=") for line in example if re.match(r"^[A-Z_]+=", line))
    assert "secrets.env" in (root / "k8s" / ".gitignore").read_text().split()
    data = configmap(objects)
    assert not set(data) & secret_keys
    assert not [k for k in data if re.search(r"(SECRET|PASSWORD|ACCESS_KEY|API_KEYS)$", k)]
