"""The pages blueprint on its own: what each page carries, and that it loads nothing external."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from PIL import Image

from api import pages
from shared.spec.methods import METHODS
from shared.spec.top_activations import PROJECTION_METHODS
from shared.spec.visualize import PARAMETRIZATIONS

STATIC = Path(pages.__file__).parent / "static"


@pytest.fixture
def client():
    app = Flask("pages-test")
    pages.init_app(app)
    return app.test_client()


def assert_only_local_assets(client, html: str) -> None:
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.startswith("/") or r.startswith("?") for r in refs), refs
    for ref in refs:
        if ref.startswith("/assets/") or ref == "/colorbar.png":
            with client.get(ref) as response:
                assert response.status_code == 200, ref


def test_index_offers_every_method_and_loads_only_local_assets(client):
    html = client.get("/").get_data(as_text=True)
    for name in METHODS:
        assert f'value="{name}"' in html
    assert_only_local_assets(client, html)


def test_index_reaches_every_kind_and_every_methods_parameters(client):
    html = client.get("/").get_data(as_text=True)
    for kind in ("attribution", "top_activations", "visualize"):
        assert f'name="kind" value="{kind}"' in html
        assert re.search(rf'data-kinds="[^"]*\b{kind}\b', html), kind
    for name, info in METHODS.items():
        for param in info.params:
            assert f'data-method="{name}" data-param="{param.name}"' in html, (name, param.name)
    for method in PROJECTION_METHODS:
        assert f'<option value="{method}">' in html
    for parametrization in PARAMETRIZATIONS:
        assert f'<option value="{parametrization}">' in html
    for field in ("sanity-sample", "dataset-uri", "top-layer", "top-channels", "top-k",
                  "vis-classes", "vis-layer", "vis-channel", "vis-steps", "vis-starts"):
        assert f'id="{field}"' in html, field


@pytest.mark.parametrize("path", ["/jobs/abc", "/jobs/abc/report"])
def test_job_and_report_pages_load_only_local_assets(client, path):
    assert_only_local_assets(client, client.get(path).get_data(as_text=True))


def test_job_page_embeds_the_id_escaped_and_a_page_size(client):
    html = client.get("/jobs/abc%22def?limit=7").get_data(as_text=True)
    assert 'data-job-id="abc&#34;def"' in html
    assert 'data-page-size="7"' in html
    assert 'data-page-size="24"' in client.get("/jobs/x?limit=-1").get_data(as_text=True)
    assert 'data-page-size="200"' in client.get("/jobs/x?limit=999").get_data(as_text=True)


@pytest.mark.parametrize("limit", ["%C2%B2", "%C2%B9", "%D9%A3", "%EF%BC%91", "1e3", "+5",
                                   "%201", "0x10", "NaN", ""])
def test_a_job_page_limit_that_is_not_a_plain_number_is_the_default(client, limit):
    """`"²".isdigit()` holds, yet `int("²")` fails: only ASCII digits are a page size."""
    response = client.get(f"/jobs/abc?limit={limit}")
    assert response.status_code == 200
    assert 'data-page-size="24"' in response.get_data(as_text=True)


def test_report_page_embeds_the_id_escaped_and_links_back_to_the_job(client):
    html = client.get("/jobs/abc%22def/report").get_data(as_text=True)
    assert 'data-job-id="abc&#34;def"' in html
    assert 'href="/jobs/abc%22def"' in html


def test_scripts_reach_only_the_api_itself(client):
    names = sorted(p.name for p in STATIC.glob("*.js"))
    assert {"app.js", "submit.js", "job.js", "report.js", "charts.js"} <= set(names)
    for name in names:
        with client.get(f"/assets/{name}") as response:
            js = response.get_data(as_text=True)
        # The SVG namespace is a name, not a place anything is loaded from.
        js = js.replace('"http://www.w3.org/2000/svg"', "")
        assert "http://" not in js and "https://" not in js, name


def test_colorbar_is_a_png_ramp_and_keeps_torch_out_of_the_api():
    code = (
        "import io, sys\n"
        "from flask import Flask\n"
        "from PIL import Image\n"
        "from api import pages\n"
        "app = Flask('t'); pages.init_app(app)\n"
        "r = app.test_client().get('/colorbar.png')\n"
        "assert r.status_code == 200 and r.mimetype == 'image/png'\n"
        "img = Image.open(io.BytesIO(r.data)).convert('RGB')\n"
        "assert img.size[0] >= 128, img.size\n"
        "assert img.getpixel((0, 0)) != img.getpixel((img.size[0] - 1, 0))\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_signed_colour_bar_is_a_grey_ramp_and_unknown_ones_are_not_found(client):
    with client.get("/colorbar.png?colormap=signed") as response:
        assert response.status_code == 200 and response.mimetype == "image/png"
        pixels = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB")).astype(int)
    row = pixels[0]
    assert (row[:, 0] == row[:, 1]).all() and (row[:, 1] == row[:, 2]).all()  # grey
    assert row[0, 0] == 0 and row[-1, 0] == 255 and (np.diff(row[:, 0]) >= 0).all()
    assert abs(row[len(row) // 2, 0] - 128) <= 1  # zero, in the middle, is the signed grey
    assert client.get("/colorbar.png?colormap=jet").status_code == 404
