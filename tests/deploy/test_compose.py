"""docker-compose.yml: the stack `docker compose up` starts, checked without Docker."""

from __future__ import annotations

from shared.settings import Settings

from .helpers import interpolate, seconds

GUNICORN_GRACEFUL_TIMEOUT = 30  # docker/gunicorn.conf.py; test_dockerfiles pins it


def test_redis_keeps_an_append_only_file_on_a_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
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
    for name in ("api", "worker", "worker-cpu"):
        depends = services[name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"


def test_api_on_port_8000_like_make_run(compose, root):
    api = compose["services"]["api"]
    assert api["ports"] == ["127.0.0.1:8000:8000"]  # no keys by default: loopback only
    assert (root / api["build"]["dockerfile"]).exists() and api["build"]["context"] == "."
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert seconds(api["stop_grace_period"]) > GUNICORN_GRACEFUL_TIMEOUT


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
        if name in ("api", "worker", "worker-cpu"):
            assert "build" in service and service.get("read_only") is True
