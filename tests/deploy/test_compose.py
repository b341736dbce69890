"""docker-compose.yml: the stack `docker compose up` starts, checked without Docker."""

from __future__ import annotations

from api.auth import check_exposure, load_keys
from api.signing import signing_key
from shared.settings import Settings

from .helpers import interpolate, seconds

GUNICORN_GRACEFUL_TIMEOUT = 30  # docker/gunicorn.conf.py; test_dockerfiles pins it


def test_redis_keeps_an_append_only_file_on_a_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") and v.split(":")[0] in compose["volumes"]
               for v in redis["volumes"])
    assert redis["healthcheck"]["test"][-1] == "ping"


def test_minio_bucket_is_created_at_start_before_the_service_starts(compose, root):
    services = compose["services"]
    init = services["minio-init"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    script = " ".join(init["command"])
    assert "mc mb --ignore-existing" in script and "STORAGE_URL" in script
    # The bucket it creates is the one the service writes to.
    assert init["environment"]["STORAGE_URL"] == services["api"]["environment"]["STORAGE_URL"]
    assert init.get("restart") == "no"
    for name in ("api", "worker", "worker-cpu", "reconciler", "beat"):
        depends = services[name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"


def test_api_on_port_8000_like_make_run(compose, root):
    api = compose["services"]["api"]
    assert api["ports"] == ["127.0.0.1:8000:8000"]  # no keys by default: loopback only
    assert (root / api["build"]["dockerfile"]).exists() and api["build"]["context"] == "."
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert seconds(api["stop_grace_period"]) > GUNICORN_GRACEFUL_TIMEOUT


def test_api_serves_without_keys_only_on_loopback_and_says_so(compose):
    services = compose["services"]
    api = services["api"]
    assert api["environment"]["SALIENCY_ALLOW_ANONYMOUS"] == "1"
    # Every port of the stack is published on 127.0.0.1 only.
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published
    # With the defaults (nothing set in the shell) the API starts: anonymous is allowed, and
    # the URLs it serves are signed with the stack's key, not a key file in its volume.
    settings = Settings.from_env({k: interpolate(str(v))
                                  for k, v in api["environment"].items()})
    assert settings.host == "0.0.0.0" and not settings.api_keys
    check_exposure(settings, load_keys(settings))
    assert signing_key(settings) == settings.signing_key.encode()
    assert "local-only" in settings.signing_key
    # A key from the shell replaces the fixed one.
    mine = {k: interpolate(str(v), {"SALIENCY_SIGNING_KEY": "f00d"})
            for k, v in api["environment"].items()}
    assert Settings.from_env(mine).signing_key == "f00d"


def test_one_scheduler_on_the_worker_image_restarted_unless_stopped(compose):
    services = compose["services"]
    beat, worker = services["beat"], services["worker"]
    assert beat["command"] == ["python", "-m", "worker", "beat"]
    assert beat["deploy"]["replicas"] == 1 and beat["restart"] == "unless-stopped"
    assert beat["image"] == worker["image"] and beat["build"] == worker["build"]
    assert beat["environment"] == services["api"]["environment"]
    schedulers = [name for name, s in services.items() if "beat" in s.get("command", [])]
    assert schedulers == ["beat"]
    # Its health check watches the schedule file, on a volume where the settings put it.
    data_dir = beat["environment"]["SALIENCY_DATA_DIR"]
    probe = beat["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"] and f"'{data_dir}/celerybeat-schedule*'" in probe[3]
    compile(probe[3], "<healthcheck>", "exec")
    assert any(v.split(":")[0] in compose["volumes"] and v.split(":")[1] == data_dir
               for v in beat["volumes"])


def test_one_reconciler_consumer_on_the_worker_image_restarted_unless_stopped(compose):
    services = compose["services"]
    reconciler, worker = services["reconciler"], services["worker"]
    assert reconciler["command"][:4] == ["python", "-m", "worker", "reconciler"]
    assert reconciler["deploy"] == {"replicas": 1} and reconciler["restart"] == "unless-stopped"
    assert reconciler["image"] == worker["image"] and reconciler["build"] == worker["build"]
    assert reconciler["environment"] == services["api"]["environment"]
    assert "inspect ping --destination celery@$$HOSTNAME" in reconciler["healthcheck"]["test"][1]
    assert "--hostname=celery@%h" in reconciler["command"]


def test_workers_restart_and_expose_their_metrics_port(compose):
    for name in ("worker", "worker-cpu"):
        worker = compose["services"][name]
        port = Settings.from_env({k: interpolate(str(v))
                                  for k, v in worker["environment"].items()}).metrics_port
        assert port == 9101 and worker["expose"] == [str(port)]
        assert "ports" not in worker  # scaled replicas would fight over a published port
        assert worker["restart"] == "unless-stopped"  # a worker's watchdog exits to restart


def test_gpu_worker_reserves_a_gpu_and_cpu_worker_is_a_profile(compose, root):
    services = compose["services"]
    gpu, cpu = services["worker"], services["worker-cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] == 1  # one worker process per GPU
    assert "profiles" not in gpu and gpu["environment"]["SALIENCY_DEVICE"] == "cuda"
    assert cpu["profiles"] == ["cpu"] and "deploy" not in cpu
    assert cpu["environment"]["SALIENCY_DEVICE"] == "cpu"
    for worker in (gpu, cpu):
        assert (root / worker["build"]["dockerfile"]).name == "Dockerfile.worker"
        assert "inspect ping --destination celery@$$HOSTNAME" in worker["healthcheck"]["test"][1]


def test_a_stopping_worker_has_time_to_finish_its_task(compose):
    for name in ("worker", "worker-cpu"):
        worker = compose["services"][name]
        env = {k: interpolate(str(v)) for k, v in worker["environment"].items()}
        settings = Settings.from_env(env)
        assert worker["stop_signal"] == "SIGTERM"
        assert seconds(worker["stop_grace_period"]) > settings.task_time_limit_s


def test_images_are_pinned_and_the_project_images_built_here(compose):
    for name, service in compose["services"].items():
        image = interpolate(service["image"])
        assert ":" in image and not image.endswith(":latest"), name
        if name in ("api", "worker", "worker-cpu", "reconciler", "beat"):
            assert "build" in service and service.get("read_only") is True
