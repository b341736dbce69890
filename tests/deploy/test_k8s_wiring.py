"""The manifests fit together and with the code: selectors, ports, probes, scaling, the one
scheduler, metrics, secrets."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from api.auth import check_exposure, load_keys
from api.signing import signing_key
from shared.settings import Settings, SettingsError

from .conftest import OVERLAYS
from .helpers import configmap, container, find, pod_spec

WORKLOADS = ("Deployment", "StatefulSet")


def workloads(objects):
    return [o for o in objects if o["kind"] in WORKLOADS]


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
    policy = find(objects, "NetworkPolicy", "redis")["spec"]
    (redis,) = [w for w in workloads(objects) if selects(policy["podSelector"]["matchLabels"], w)]
    assert redis["metadata"]["name"] == "redis"
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    allowed = {w["metadata"]["name"] for w in workloads(objects)
               if selects(source["podSelector"]["matchLabels"], w)}
    assert {"saliency-api", "saliency-worker", "saliency-reconciler", "saliency-beat"} <= allowed
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
def test_one_reconciler_consumer_pinged_alive_with_its_metrics_scraped(rendered, overlay):
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", "saliency-reconciler")
    assert deployment["spec"]["replicas"] == 1
    targets = {o["spec"]["scaleTargetRef"]["name"] for o in objects
               if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")}
    assert "saliency-reconciler" not in targets
    c = container(deployment, "reconciler")
    assert "--hostname=celery@%h" in c["args"] and "nvidia.com/gpu" not in str(c["resources"])
    command = c["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    assert re.search(r'inspect ping\s+--destination "celery@\$HOSTNAME"', command[2])
    port = Settings.from_env(configmap(objects)).metrics_port
    assert {"name": "metrics", "containerPort": port} in c["ports"]
    assert deployment["spec"]["template"]["metadata"]["annotations"][
        "prometheus.io/port"] == str(port)
    reconcilers = [x["name"] for o in workloads(objects) for x in pod_spec(o)["containers"]
                   if "reconciler" in x.get("args", []) + x.get("command", [])]
    assert reconcilers == ["reconciler"]


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
def test_keda_scales_the_worker_on_the_queue_depth_the_api_reports(rendered, overlay):
    objects = rendered[overlay]
    spec = find(objects, "ScaledObject", "saliency-worker")["spec"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["valueLocation"] == "depth" and meta["format"] == "json"
    assert float(meta["targetValue"]) >= 1
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert spec["cooldownPeriod"] > 0
    # KEDA's operator runs in its own namespace: the URL names the API's Service in full, on
    # one of its ports, and the route the API answers the depth on.
    url = urlsplit(meta["url"])
    service, namespace, rest = url.hostname.split(".", 2)
    api = find(objects, "Service", service)
    assert service == "saliency-api" and rest == "svc.cluster.local"
    assert namespace == api["metadata"]["namespace"]
    assert url.scheme == "http" and (url.port or 80) in {p["port"] for p in api["spec"]["ports"]}
    assert url.path == "/metrics/queue" and not url.query


def test_the_route_keda_reads_answers_the_depth_without_an_api_key(
        rendered, secret_example, tmp_path, monkeypatch):
    """The API, configured as the gpu overlay configures it, answers `{"depth": N}` on the
    trigger's path to a caller without a key (KEDA has none), while /v1 wants one."""
    import api.metrics
    from api import create_app

    objects = rendered["gpu"]
    env = {**configmap(objects), **secret_example, "SALIENCY_API_KEYS": "k:team",
           "SALIENCY_SIGNING_KEY": "s", "STORAGE_URL": (tmp_path / "storage").as_uri(),
           "SALIENCY_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    monkeypatch.setattr(api.metrics, "queue_depth", lambda client, fair: 7)
    client = create_app(Settings.from_env(env)).test_client()
    (trigger,) = find(objects, "ScaledObject", "saliency-worker")["spec"]["triggers"]
    answer = client.get(urlsplit(trigger["metadata"]["url"]).path)
    assert answer.status_code == 200 and answer.get_json() == {"depth": 7}
    assert client.get("/v1/jobs").status_code == 401


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_one_scheduler_replaced_by_recreate(rendered, overlay):
    objects = rendered[overlay]
    beat = find(objects, "Deployment", "saliency-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert container(beat, "beat")["args"] == ["python", "-m", "worker", "beat"]
    # No autoscaler may touch it, and no other container runs a scheduler.
    targets = {o["spec"]["scaleTargetRef"]["name"] for o in objects
               if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")}
    assert "saliency-beat" not in targets
    schedulers = [c["name"] for o in workloads(objects) for c in pod_spec(o)["containers"]
                  if "beat" in c.get("args", []) + c.get("command", [])]
    assert schedulers == ["beat"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scheduler_liveness_watches_its_schedule_file_in_the_data_dir(rendered, overlay):
    objects = rendered[overlay]
    beat = find(objects, "Deployment", "saliency-beat")
    c = container(beat, "beat")
    command = c["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<probe>", "exec")  # a syntax error would restart beat forever
    data_dir = configmap(objects)["SALIENCY_DATA_DIR"]
    assert f"'{data_dir}/celerybeat-schedule*'" in command[2]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == data_dir)
    volumes = {v["name"]: v for v in pod_spec(beat)["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]  # writable under a read-only root
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_expose_metrics_with_scrape_annotations(rendered, overlay):
    objects = rendered[overlay]
    worker = find(objects, "Deployment", "saliency-worker")
    port = Settings.from_env(configmap(objects)).metrics_port
    assert port > 0
    assert {"name": "metrics", "containerPort": port} in container(worker, "worker")["ports"]
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/metrics"}


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
    assert args[args.index("--appendfsync") + 1] == "everysec"
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
def test_no_secret_value_is_committed(rendered, overlay, root, secret_example):
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] == "Secret"]
    refs = set()
    for obj in workloads(objects):
        for c in pod_spec(obj)["containers"]:
            refs |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
            refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                     if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"saliency-secrets"}
    secret_keys = set(secret_example)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SALIENCY_API_KEYS",
            "SALIENCY_SIGNING_KEY", "SALIENCY_WEBHOOK_MASTER_KEY"} <= secret_keys
    # Every value is empty but the API keys' placeholder, which is no key at all (below).
    assert {k for k, v in secret_example.items() if v} == {"SALIENCY_API_KEYS"}
    assert "secrets.env" in (root / "k8s" / ".gitignore").read_text().split()
    data = configmap(objects)
    assert not set(data) & secret_keys
    assert not [k for k in data
                if re.search(r"(SECRET|PASSWORD|ACCESS_KEY|API_KEYS|_KEY)$", k)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_will_not_start_without_keys_as_the_secret_example_ships(
        rendered, overlay, secret_example):
    env = {**configmap(rendered[overlay]), **secret_example}
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0" and settings.allow_anonymous is False
    # The placeholder is not a valid key entry: the API stops at start until it is replaced.
    with pytest.raises(SettingsError, match="key:tenant"):
        load_keys(settings)
    # Emptied instead of filled in, the API still refuses: the base requires keys.
    empty = Settings.from_env({**env, "SALIENCY_API_KEYS": ""})
    with pytest.raises(SettingsError, match="without API keys"):
        check_exposure(empty, load_keys(empty))
    filled = Settings.from_env({**env, "SALIENCY_API_KEYS": "0123abcd:team-a"})
    assert filled.api_keys == ("0123abcd:team-a",)
    # The signing key, empty in the example, must be filled in too.
    with pytest.raises(SettingsError, match="without SALIENCY_SIGNING_KEY"):
        check_exposure(filled, load_keys(filled))
    with pytest.raises(SettingsError, match="SALIENCY_SIGNING_KEY"):
        signing_key(filled)
    signed = Settings.from_env({**env, "SALIENCY_API_KEYS": "0123abcd:team-a",
                                "SALIENCY_SIGNING_KEY": "f00d"})
    check_exposure(signed, load_keys(signed))
    assert signing_key(signed) == b"f00d"
