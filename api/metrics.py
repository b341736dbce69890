"""`/metrics` in the Prometheus text format (prometheus-client), from the counters kept in
Redis, so every API replica reports the same figures. Workers export their own (images per
second, batch latency, queue wait, retries, reconciler actions) on `SALIENCY_METRICS_PORT`."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from api.context import Services, services
from shared.state.jobschema import ITEMS_DONE, ITEMS_FAILED, LATENCY, STATS, jobs_stat
from shared.state.jobstore import LATENCY_BUCKETS_S
from shared.status import JobStatus
from shared.taskqueue import queue_depth

bp = Blueprint("metrics", __name__)


class StoreCollector:
    """Reads the shared counters from Redis at each scrape."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator:
        pipe = self.svc.redis.pipeline(transaction=False)
        pipe.hgetall(STATS)
        pipe.hgetall(LATENCY)
        counters, latency = pipe.execute()
        jobs = GaugeMetricFamily("saliency_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], int(counters.get(jobs_stat(status), 0)))
        yield jobs
        yield CounterMetricFamily("saliency_items_done", "Items attributed successfully.",
                                  value=int(counters.get(ITEMS_DONE, 0)))
        yield CounterMetricFamily("saliency_items_failed", "Items that failed.",
                                  value=int(counters.get(ITEMS_FAILED, 0)))
        yield GaugeMetricFamily("saliency_queue_depth", "Chunks and tasks waiting, in every "
                                "queue (Celery's and the tenants' ready lists).",
                                value=queue_depth(self.svc.redis, self.svc.fair))
        buckets = [(str(le), int(latency.get(str(le), 0))) for le in LATENCY_BUCKETS_S]
        buckets.append(("+Inf", int(latency.get("+Inf", 0))))
        yield HistogramMetricFamily("saliency_job_latency_seconds",
                                    "Time from submission to a final status.",
                                    buckets=buckets, sum_value=float(latency.get("sum", 0.0)))


@bp.get("/metrics")
def metrics():
    registry = CollectorRegistry()
    registry.register(StoreCollector(services()))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@bp.get("/metrics/queue")
def queue():
    """The queue depth alone, as JSON: what KEDA's metrics-api scaler reads."""
    svc = services()
    return {"depth": queue_depth(svc.redis, svc.fair)}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
