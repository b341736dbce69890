"""`/metrics` in the Prometheus text format, from the counters the job store keeps in Redis."""

from __future__ import annotations

from flask import Blueprint, Flask, Response

from api.context import services
from shared.jobstore import LATENCY_BUCKETS_S
from shared.status import JobStatus
from shared.taskqueue import queue_depth

bp = Blueprint("metrics", __name__)


def render_metrics(counters: dict[str, str], latency: dict[str, str], depth: int) -> str:
    lines = [
        "# HELP saliency_jobs Jobs by status.",
        "# TYPE saliency_jobs gauge",
        *(
            f'saliency_jobs{{status="{s.value}"}} {int(counters.get("jobs:" + s.value, 0))}'
            for s in JobStatus
        ),
        "# HELP saliency_items_done_total Items attributed successfully.",
        "# TYPE saliency_items_done_total counter",
        f"saliency_items_done_total {int(counters.get('items_done', 0))}",
        "# HELP saliency_items_failed_total Items that failed.",
        "# TYPE saliency_items_failed_total counter",
        f"saliency_items_failed_total {int(counters.get('items_failed', 0))}",
        "# HELP saliency_queue_depth Tasks waiting in the queue.",
        "# TYPE saliency_queue_depth gauge",
        f"saliency_queue_depth {depth}",
        "# HELP saliency_job_latency_seconds Time from submission to a final status.",
        "# TYPE saliency_job_latency_seconds histogram",
    ]
    for le in (*LATENCY_BUCKETS_S, "+Inf"):
        count = int(latency.get(str(le), 0))
        lines.append(f'saliency_job_latency_seconds_bucket{{le="{le}"}} {count}')
    lines.append(f"saliency_job_latency_seconds_sum {float(latency.get('sum', 0.0))}")
    lines.append(f"saliency_job_latency_seconds_count {int(latency.get('+Inf', 0))}")
    return "\n".join(lines) + "\n"


@bp.get("/metrics")
def metrics():
    store = services().store
    counters, latency = store.stats()
    text = render_metrics(counters, latency, queue_depth(store.redis))
    return Response(text, mimetype="text/plain", content_type="text/plain; version=0.0.4")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
