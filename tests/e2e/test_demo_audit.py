"""The planted-confounder demo through the real stack, as `make demo-audit` runs it: the
model registered through the API, the test pictures uploaded and submitted as one job with
their ids, labels and boxes, and the three figures measured from the API's report and
results file (`demo.confounder.service`).

The model is the in-process test's (tests/worker/audit/test_audit_confounder.py), from the
session fixture `confounder_demo`: trained once at 32 px on one torch thread.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from saliency_client import Client

from demo.confounder import data
from demo.confounder.figures import from_results
from demo.confounder.service import register, run

SEED = 0


@pytest.fixture(scope="module")
def audited(api_url, confounder_demo):
    with Client(api_url) as client:
        # Only the arrays per item: the figures and the report's pictures need no PNGs.
        return run(client, confounder_demo.directory, seed=SEED, outputs=["npy"], timeout=300,
                   progress=False)


def test_marked_pictures_lead_the_suspects(audited):
    assert audited.figures.precision_at_20 >= 0.8
    top = audited.report["suspects"][0]
    assert top["id"].endswith("-marked") and top["overlay"].startswith("http")


def test_marked_pictures_form_their_own_cluster(audited):
    assert audited.figures.purity >= 0.8
    assert audited.figures.marked_in_that_cluster > 0.5


def test_clean_pictures_have_their_relevance_on_the_object(audited, confounder_demo):
    figures = audited.figures
    side = confounder_demo.size
    clean = [s for s in confounder_demo.test if not s.marked]
    area = np.mean([(s.box[2] - s.box[0]) * (s.box[3] - s.box[1]) / side**2 for s in clean])
    assert figures.clean_energy_in_box >= 2 * area  # twice what a uniform map gets
    assert figures.clean_energy_in_box >= 1.1 * figures.baseline_energy_in_box


def test_the_job_carried_each_pictures_id_label_and_box(audited):
    report = audited.report
    total = data.TEST_PER_CLASS * len(data.CLASSES)
    assert report["counts"]["items"] == report["counts"]["labelled"] == total
    # Every picture's object box reached the worker: each has its energy_in_box.
    assert report["methods"][0]["metrics"]["energy_in_box"]["count"] == total


def test_the_report_page_it_prints_is_served(audited, api_url):
    assert audited.page == f"{api_url}/jobs/{audited.job.id}/report"
    page = httpx.get(audited.page, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_registering_the_model_again_finds_it(audited, api_url, confounder_demo):
    with Client(api_url) as client:
        name = register(client, confounder_demo.directory)
        assert name == audited.job.state.raw["model"]
        assert client.model(name).num_classes == len(data.CLASSES)


def test_the_figures_read_the_report_and_the_results_rows():
    # Items 0-3 carry the mark; class 0's clusters are {0, 1, 2, 4} and {3, 5}.
    ids = ["a-marked", "b-marked", "c-marked", "d-marked", "e-clean", "f-clean"]
    report = {"methods": [{"position": 0}, {"position": 1}],
              "suspects": [{"index": i} for i in (0, 4, 1)],
              "clusters": [
                  {"class": 0, "position": 1, "clusters": [{"members": [4, 5]}]},
                  {"class": 2, "position": 0, "clusters": [{"members": [0, 1, 2]}]},
                  {"class": 0, "position": 0, "clusters": [{"members": [0, 1, 2, 4]},
                                                           {"members": [3, 5]}]}]}
    rows = [{"index": i, "id": item_id, "position": p,
             "energy_in_box": None if i == 5 else 0.1 * i + p,
             "baseline_energy_in_box": 0.2}
            for i, item_id in enumerate(ids) for p in (0, 1)]
    figures = from_results(report, rows)
    assert figures.precision_at_20 == pytest.approx(2 / 3)
    assert figures.purity == pytest.approx(3 / 4)
    assert figures.marked_in_that_cluster == pytest.approx(3 / 4)
    assert figures.clean_energy_in_box == pytest.approx(0.4)  # item 5's is undefined
    assert figures.baseline_energy_in_box == pytest.approx(0.2)
