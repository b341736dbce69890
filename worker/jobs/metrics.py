"""A worker's own Prometheus metrics (prometheus-client), exported on `SALIENCY_METRICS_PORT`
by the pool process that does the work: images per second (a counter), batch latency, how
long chunks waited in the queue, retries and reconciler actions, and GPU memory."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

IMAGES = Counter("saliency_worker_images", "Items processed by this worker.", ["outcome"])
BATCH_SECONDS = Histogram("saliency_worker_batch_seconds", "Engine time per batch.",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
QUEUE_WAIT = Histogram("saliency_worker_queue_wait_seconds",
                       "From a chunk's dispatch to its start on this worker.",
                       buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800))
RETRIES = Counter("saliency_worker_retries", "Transient failures retried.", ["what"])
RECONCILER = Counter("saliency_reconciler_actions", "What the reconciler did.", ["action"])
GPU_MEMORY = Gauge("saliency_worker_gpu_memory_bytes", "GPU memory allocated by the engine.")


def export(port: int) -> None:
    """Serve the metrics on `port` (0: not at all)."""
    if port:
        start_http_server(port)
        log.info("worker metrics on :%d/metrics", port)


def observe_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        GPU_MEMORY.set(torch.cuda.memory_allocated())
