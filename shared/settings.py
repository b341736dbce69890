"""All configuration, read once from the environment into one frozen object.

`REDIS_URL`, `STORAGE_URL` and `S3_ENDPOINT_URL` keep their conventional names; everything
else is prefixed `SALIENCY_`. Defaults are those of the embedded single-machine mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

SECRET_FIELDS = frozenset({"api_keys", "redis_url", "webhook_master_key", "signing_key"})


class SettingsError(ValueError):
    """An environment variable holds a value of the wrong kind."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _host_ports(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated `host` or `host:port` entries (an IPv6 address in brackets:
    `[::1]:8443`), lower-cased."""
    entries = _list(env, name, ())
    for entry in entries:
        try:
            parsed = urlsplit(f"//{entry}")
            good = (parsed.netloc == entry and bool(parsed.hostname) and "@" not in entry
                    and not entry.endswith(":") and parsed.port != 0)
        except ValueError:  # a port out of range or not a number, an unclosed `[`
            good = False
        if not good:
            raise SettingsError(f"{name}: {entry!r} must be host or host:port (port 1-65535, an "
                                "IPv6 address in brackets), e.g. hooks.internal,[::1]:8443")
    return tuple(entry.lower() for entry in entries)


def _ints(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A comma-separated list of non-negative integers (seconds)."""
    raw = _list(env, name, ())
    if not raw:
        return default
    try:
        values = tuple(int(v) for v in raw)
    except ValueError:
        raise SettingsError(f"{name}={','.join(raw)!r} must be integers, e.g. 5,30,120") from None
    if any(v < 0 for v in values):
        raise SettingsError(f"{name} must not be negative")
    return values


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} must be 1 or 0")


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum or value == float("inf"):
        raise SettingsError(f"{name}={value} must be a finite number >= {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {list(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; see `from_env` for the variable behind each field."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = "file://var/storage"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None  # presigned URLs are signed for this host
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    api_keys: tuple[str, ...] = ()  # "key:tenant[:admin]" entries
    api_keys_file: str | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    max_model_bytes: int = 1024 * 1024 * 1024
    max_images_per_job: int = 1000
    max_uris_per_job: int = 100_000
    max_image_pixels: int = 25_000_000
    accepted_formats: tuple[str, ...] = ("png", "jpeg", "webp", "npy")
    batch_size: int = 16
    chunk_size: int = 64  # items per task: a job is split into tasks of this many items
    model_cache_size: int = 4
    device: str = "auto"
    precision: str = "float32"
    render_threads: int = 1
    torch_threads: int = 0  # intra-op threads of the engine on CPU; 0: torch's default
    task_time_limit_s: int = 1800
    visibility_timeout_s: int = 3600
    max_attempts: int = 3
    presign_expires_s: int = 3600
    log_format: str = "text"
    builtin_models: bool = True
    data_dir: str = "var"
    idempotency_ttl_s: int = 24 * 3600
    memory_budget_mb: int = 0  # 0: free GPU memory on CUDA, a share of RAM on CPU
    allow_anonymous: bool = False  # serve beyond loopback with no API keys
    lease_s: int = 60  # a chunk's lease; a heartbeat renews it every third of it
    stall_s: int = 900  # a job with no progress for this long is examined
    retry_budget_s: int = 300  # how long transient errors are retried
    reconcile_every_s: int = 15
    rate_submit: float = 20.0  # POSTs per second per tenant
    rate_submit_burst: int = 100
    rate_read: float = 1000.0  # GETs per second per tenant
    max_queued_items: int = 10_000_000  # per tenant
    result_ttl_s: int = 7 * 24 * 3600
    tombstone_ttl_s: int = 30 * 24 * 3600
    dataset_roots: tuple[str, ...] = ()  # "[tenant=]s3://bucket[/prefix]" or "file:///dir"
    max_dataset_items: int = 10_000_000
    dataset_chunk_size: int = 256  # items per chunk of a data-set job
    max_manifest_line_bytes: int = 1 << 20  # a longer manifest line fails its item unread
    max_annotation_bytes: int = 2 << 30  # a COCO file, or a VOC prefix's XMLs in all
    results_part_rows: int = 8192  # rows per part the finalizer writes and checkpoints
    spray_sample: int = 10_000  # maps of a class SpRAy clusters; the others are assigned
    max_aspect_ratio: float = 20.0  # of an input image, long side over short side
    webhook_allowed_hosts: tuple[str, ...] = ()  # "host" (its default port) or "host:port"
    webhook_ca_file: str | None = None  # CAs (PEM) of HTTPS webhooks; None: the system's
    webhook_master_key: str | None = None
    webhook_retry_schedule: tuple[int, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400,
                                               28800, 28800)  # about 24 h in all
    signing_key: str | None = None  # signs API-served file URLs; embedded: a key in data_dir
    faults: tuple[str, ...] = ()  # test-only fault injection; see docs/operations.md
    metrics_port: int = 0  # a worker's Prometheus metrics port; 0: not exported
    max_visualize_steps: int = 2000
    max_projections: int = 20_000  # channels × k × methods of a top_activations job

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default `os.environ`), failing on malformed values."""
        env = os.environ if env is None else env
        d = cls()
        settings = cls(
            redis_url=env.get("REDIS_URL") or d.redis_url,
            storage_url=env.get("STORAGE_URL") or d.storage_url,
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            s3_public_endpoint_url=env.get("SALIENCY_S3_PUBLIC_ENDPOINT_URL") or None,
            host=env.get("SALIENCY_HOST") or d.host,
            port=_int(env, "SALIENCY_PORT", d.port, 1),
            public_url=(env.get("SALIENCY_PUBLIC_URL") or "").rstrip("/") or None,
            api_keys=_list(env, "SALIENCY_API_KEYS", d.api_keys),
            api_keys_file=env.get("SALIENCY_API_KEYS_FILE") or None,
            max_request_bytes=_int(env, "SALIENCY_MAX_REQUEST_BYTES", d.max_request_bytes, 1),
            max_model_bytes=_int(env, "SALIENCY_MAX_MODEL_BYTES", d.max_model_bytes, 1),
            max_images_per_job=_int(env, "SALIENCY_MAX_IMAGES_PER_JOB", d.max_images_per_job, 1),
            max_uris_per_job=_int(env, "SALIENCY_MAX_URIS_PER_JOB", d.max_uris_per_job, 1),
            max_image_pixels=_int(env, "SALIENCY_MAX_IMAGE_PIXELS", d.max_image_pixels, 1),
            accepted_formats=_list(env, "SALIENCY_ACCEPTED_FORMATS", d.accepted_formats),
            batch_size=_int(env, "SALIENCY_BATCH_SIZE", d.batch_size, 1),
            chunk_size=_int(env, "SALIENCY_CHUNK_SIZE", d.chunk_size, 1),
            model_cache_size=_int(env, "SALIENCY_MODEL_CACHE_SIZE", d.model_cache_size, 1),
            device=_choice(env, "SALIENCY_DEVICE", d.device, ("auto", "cpu", "cuda")),
            precision=_choice(
                env, "SALIENCY_PRECISION", d.precision, ("float32", "float16", "bfloat16")
            ),
            render_threads=_int(env, "SALIENCY_RENDER_THREADS", d.render_threads, 1),
            torch_threads=_int(env, "SALIENCY_TORCH_THREADS", d.torch_threads, 0),
            task_time_limit_s=_int(env, "SALIENCY_TASK_TIME_LIMIT_S", d.task_time_limit_s, 1),
            visibility_timeout_s=_int(
                env, "SALIENCY_VISIBILITY_TIMEOUT_S", d.visibility_timeout_s, 1
            ),
            max_attempts=_int(env, "SALIENCY_MAX_ATTEMPTS", d.max_attempts, 1),
            presign_expires_s=_int(env, "SALIENCY_PRESIGN_EXPIRES_S", d.presign_expires_s, 1),
            log_format=_choice(env, "SALIENCY_LOG_FORMAT", d.log_format, ("text", "json")),
            builtin_models=(env.get("SALIENCY_BUILTIN_MODELS") or "1") not in ("0", "false"),
            data_dir=env.get("SALIENCY_DATA_DIR") or d.data_dir,
            idempotency_ttl_s=_int(env, "SALIENCY_IDEMPOTENCY_TTL_S", d.idempotency_ttl_s, 1),
            memory_budget_mb=_int(env, "SALIENCY_MEMORY_BUDGET_MB", d.memory_budget_mb, 0),
            max_visualize_steps=_int(
                env, "SALIENCY_MAX_VISUALIZE_STEPS", d.max_visualize_steps, 1
            ),
            max_projections=_int(env, "SALIENCY_MAX_PROJECTIONS", d.max_projections, 1),
            allow_anonymous=_bool(env, "SALIENCY_ALLOW_ANONYMOUS", d.allow_anonymous),
            lease_s=_int(env, "SALIENCY_LEASE_S", d.lease_s, 3),
            stall_s=_int(env, "SALIENCY_STALL_S", d.stall_s, 10),
            retry_budget_s=_int(env, "SALIENCY_RETRY_BUDGET_S", d.retry_budget_s, 0),
            reconcile_every_s=_int(env, "SALIENCY_RECONCILE_EVERY_S", d.reconcile_every_s, 1),
            rate_submit=_float(env, "SALIENCY_RATE_SUBMIT", d.rate_submit, 0.001),
            rate_submit_burst=_int(env, "SALIENCY_RATE_SUBMIT_BURST", d.rate_submit_burst, 1),
            rate_read=_float(env, "SALIENCY_RATE_READ", d.rate_read, 0.001),
            max_queued_items=_int(env, "SALIENCY_MAX_QUEUED_ITEMS", d.max_queued_items, 1),
            result_ttl_s=_int(env, "SALIENCY_RESULT_TTL_S", d.result_ttl_s, 1),
            tombstone_ttl_s=_int(env, "SALIENCY_TOMBSTONE_TTL_S", d.tombstone_ttl_s, 1),
            dataset_roots=_list(env, "SALIENCY_DATASET_ROOTS", d.dataset_roots),
            max_dataset_items=_int(env, "SALIENCY_MAX_DATASET_ITEMS", d.max_dataset_items, 1),
            dataset_chunk_size=_int(env, "SALIENCY_DATASET_CHUNK_SIZE", d.dataset_chunk_size, 1),
            max_manifest_line_bytes=_int(env, "SALIENCY_MAX_MANIFEST_LINE_BYTES",
                                         d.max_manifest_line_bytes, 1),
            max_annotation_bytes=_int(env, "SALIENCY_MAX_ANNOTATION_BYTES",
                                      d.max_annotation_bytes, 1),
            results_part_rows=_int(env, "SALIENCY_RESULTS_PART_ROWS", d.results_part_rows, 1),
            # At least the smallest class that is clustered
            # (worker.kinds.attribution.audit.MIN_CLASS_ITEMS).
            spray_sample=_int(env, "SALIENCY_SPRAY_SAMPLE", d.spray_sample, 20),
            max_aspect_ratio=_float(env, "SALIENCY_MAX_ASPECT_RATIO", d.max_aspect_ratio, 1.0),
            webhook_allowed_hosts=_host_ports(env, "SALIENCY_WEBHOOK_ALLOWED_HOSTS"),
            webhook_ca_file=env.get("SALIENCY_WEBHOOK_CA_FILE") or None,
            webhook_master_key=env.get("SALIENCY_WEBHOOK_MASTER_KEY") or None,
            webhook_retry_schedule=_ints(env, "SALIENCY_WEBHOOK_RETRY_SCHEDULE",
                                         d.webhook_retry_schedule),
            signing_key=env.get("SALIENCY_SIGNING_KEY") or None,
            faults=_list(env, "SALIENCY_FAULTS", d.faults),
            metrics_port=_int(env, "SALIENCY_METRICS_PORT", d.metrics_port, 0),
        )
        if settings.task_time_limit_s >= settings.visibility_timeout_s:
            raise SettingsError(
                "SALIENCY_TASK_TIME_LIMIT_S must be below SALIENCY_VISIBILITY_TIMEOUT_S, or the "
                "broker redelivers a task while its first copy still runs"
            )
        return settings

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"
