"""The audit report page of a real audited job (24 labelled items with boxes, two methods,
the sanity check) in headless Chromium, on the stack with API keys and file storage (its
pictures at URLs the API signed). The page is opened once, through the key prompt."""

from __future__ import annotations

import pytest
from browsing import follow, give_key, images_loaded, ready, screenshot
from selenium.webdriver.common.by import By

pytestmark = pytest.mark.parametrize("stack", ["file"], indirect=True)


@pytest.fixture(scope="module")
def report_page(module_browser, audited_job):
    """The report page, rendered; the browser and the job."""
    browser = module_browser
    browser.get(f"{audited_job.url}/jobs/{audited_job.job['id']}/report")
    give_key(browser, audited_job.key)
    ready(browser)
    return browser, audited_job


def test_every_picture_loads_and_the_counts_equal_the_reports(report_page):
    browser, made = report_page
    report = made.report
    clusters = sum(len(group["clusters"]) for group in report["clusters"])
    assert clusters >= 1 and report["suspects"]
    overlays = sum(1 for s in report["suspects"] if s["overlay"])
    assert images_loaded(browser) == clusters + overlays
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster-group")) == len(
        report["clusters"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster")) == clusters
    suspects = browser.find_elements(By.CSS_SELECTOR, "#suspects .suspect")
    assert [int(s.get_attribute("data-index")) for s in suspects] == [
        s["index"] for s in report["suspects"]]
    first = suspects[0].text
    assert report["suspects"][0]["reasons"][0] in first
    assert f"score {report['suspects'][0]['score']:.2f}" in first
    screenshot(browser, "report")


def test_accuracy_and_confusions_as_in_the_report(report_page):
    browser, made = report_page
    accuracy = made.report["accuracy"]
    assert f"Accuracy {accuracy['overall'] * 100:.1f}%" in browser.find_element(By.ID,
                                                                               "summary").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#per-class tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [
        str(c["items"]) for c in accuracy["per_class"]]
    confusions = browser.find_elements(By.CSS_SELECTOR, "#confusions tbody tr")
    assert made.report["confusions"] and len(confusions) == len(made.report["confusions"])
    assert confusions[0].find_elements(By.TAG_NAME, "td")[2].text == str(
        made.report["confusions"][0]["count"])


def test_each_metric_has_its_histogram_and_quantiles_beside_the_baseline(report_page):
    browser, made = report_page
    for method in made.report["methods"]:
        article = browser.find_element(By.CSS_SELECTOR,
                                       f"article.method[data-method={method['method']}]")
        for name, figures in method["metrics"].items():
            figure = article.find_element(By.CSS_SELECTOR, f"figure[data-metric={name}]")
            bars = figure.find_elements(By.CSS_SELECTOR, "svg rect.bar")
            assert len(bars) == sum(1 for c in figures["histogram"]["counts"] if c), name
            assert figure.find_elements(By.CSS_SELECTOR, "svg path.baseline"), name
            assert len(figure.find_elements(By.CSS_SELECTOR, "svg line.quantile")) == 3
            rows = figure.find_elements(By.CSS_SELECTOR, "table.quantiles tbody tr")
            median = rows[0].find_elements(By.TAG_NAME, "td")[2].text
            baseline = rows[1].find_elements(By.TAG_NAME, "td")[2].text
            assert median == f"{figures['p50']:.2f}"
            assert baseline == f"{method['baseline']['metrics'][name]['p50']:.2f}"


def method_names(job: dict) -> list[str]:
    """The names of a job's methods, as echoed: names, or objects with their parameters."""
    return [m if isinstance(m, str) else m["name"] for m in job["methods"]]


def test_the_sanity_curves_are_drawn_with_each_verdict(report_page):
    browser, made = report_page
    sanity, methods = made.report["sanity"], method_names(made.job)
    assert [m["method"] for m in sanity["methods"]] == methods
    for key in ("spearman", "ssim"):
        figure = browser.find_element(By.CSS_SELECTOR, f"figure[data-figure={key}]")
        lines = figure.find_elements(By.CSS_SELECTOR, "svg polyline.line")
        assert [line.get_attribute("data-series") for line in lines] == methods
        for line in lines:
            assert len(line.get_attribute("points").split()) == len(sanity["blocks"])
    verdicts = browser.find_elements(By.CSS_SELECTOR, "#verdicts li")
    for item, method in zip(verdicts, sanity["methods"], strict=True):
        assert method["text"] in item.text and method["verdict"] in item.text.lower()


def test_input_dependence_one_line_per_method(report_page):
    browser, made = report_page
    lines = browser.find_elements(By.CSS_SELECTOR, "#dependence li")
    assert [li.get_attribute("data-method") for li in lines] == method_names(made.job)
    for li, entry in zip(lines, made.report["input_dependence"], strict=True):
        assert f"median cosine {entry['median_cosine']:.2f}" in li.text
        assert (entry["warning"] or "") in li.text


def test_the_job_page_links_the_report_once_final(report_page):
    browser, made = report_page
    browser.get(f"{made.url}/jobs/{made.job['id']}")
    ready(browser)
    link = browser.find_element(By.ID, "report-link")
    assert link.is_displayed()
    follow(browser, link)
    ready(browser)
    assert browser.current_url.endswith(f"/jobs/{made.job['id']}/report")
