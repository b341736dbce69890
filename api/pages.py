"""Web pages: `/` submits a job of any kind, `/jobs/<id>` follows a job and shows its results
by kind (maps page by page, top-activation grids, visualizations as they arrive), and
`/jobs/<id>/report` draws an attribution job's audit report.

The pages are plain HTML plus a little JavaScript that speaks the v1 API from the browser,
so the API stays the one source of truth: no job or model state is read here. When API keys
are configured, the browser sends the key (kept in sessionStorage) as a Bearer token; with
no keys (the embedded default) nothing is asked. Everything a page loads is served from here.
"""

from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, Flask, Response, abort, render_template, request

from shared.media.render import COLORMAPS, colorbar_png
from shared.spec.job import DEFAULT_OUTPUTS, OUTPUTS, REDUCTIONS
from shared.spec.methods import DEFAULT_METHODS, METHODS
from shared.spec.top_activations import DEFAULT_K, MAX_K, PROJECTION_METHODS
from shared.spec.visualize import PARAMETRIZATIONS

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")
PAGE_SIZE, MAX_PAGE_SIZE = 24, 200


@bp.get("/")
def index():
    return render_template("index.html", methods=METHODS, default_methods=DEFAULT_METHODS,
                           reductions=REDUCTIONS, outputs=OUTPUTS,
                           default_outputs=DEFAULT_OUTPUTS, top_k=DEFAULT_K, top_max_k=MAX_K,
                           projection_methods=PROJECTION_METHODS,
                           parametrizations=PARAMETRIZATIONS)


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    size = request.args.get("limit", "")
    # ASCII digits only: `"²".isdigit()` holds, yet `int("²")` fails.
    wanted = int(size) if size.isascii() and size.isdecimal() else 0
    page_size = min(wanted, MAX_PAGE_SIZE) if wanted > 0 else PAGE_SIZE
    return render_template("job.html", job_id=job_id, page_size=page_size)


@bp.get("/jobs/<job_id>/report")
def report(job_id: str):
    return render_template("report.html", job_id=job_id)


@lru_cache(maxsize=len(COLORMAPS))
def _colorbar(colormap: str) -> bytes:
    # The renderer that draws the maps draws the bar, so they match by construction.
    return colorbar_png(colormap=colormap)


@bp.get("/colorbar.png")
def colorbar():
    """The inferno bar of heatmaps, or with `?colormap=signed` the grey ramp of signed maps."""
    colormap = request.args.get("colormap", "inferno")
    if colormap not in COLORMAPS:
        abort(404)
    response = Response(_colorbar(colormap), mimetype="image/png")
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
