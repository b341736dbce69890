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


def listed(report: dict) -> list[dict]:
    """The suspects at or above the report's threshold: those the page lists."""
    return [s for s in report["suspects"] if s["score"] >= report["suspect_threshold"]]


def test_every_picture_loads_and_the_counts_equal_the_reports(report_page):
    browser, made = report_page
    report = made.report
    clusters = sum(len(group["clusters"]) for group in report["clusters"])
    assert clusters >= 1 and listed(report)
    overlays = sum(1 for s in listed(report) if s["overlay"])
    assert images_loaded(browser) == clusters + overlays
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster-group")) == len(
        report["clusters"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster")) == clusters
    screenshot(browser, "report")


def test_suspects_are_listed_from_the_threshold_on_each_with_its_reasons(report_page):
    browser, made = report_page
    report = made.report
    shown = listed(report)
    # The job's suspects straddle the threshold: the page leaves the low scores out.
    assert shown and len(shown) < len(report["suspects"])
    suspects = browser.find_elements(By.CSS_SELECTOR, "#suspects .suspect")
    assert [int(s.get_attribute("data-index")) for s in suspects] == [s["index"] for s in shown]
    for figure, entry in zip(suspects, shown, strict=True):
        reasons = [li.text for li in figure.find_elements(By.CSS_SELECTOR, ".reasons li")]
        assert reasons and reasons == entry["reasons"]
        assert f"score {entry['score']:.2f}" in figure.text
        # By its id, or by its file's name where its id is its URI; the URI on hover.
        link = figure.find_element(By.CSS_SELECTOR, "figcaption a")
        uri = entry["input"]["uri"]
        assert link.text == (uri.rsplit("/", 1)[1] if entry["id"] == uri else entry["id"])
        assert uri in link.get_attribute("title").split("\n")
    assert any(s["id"] == s["input"]["uri"] for s in shown)  # both kinds of name are shown
    summary = browser.find_element(By.ID, "suspects-summary").text
    assert summary.startswith(f"{len(shown)} item(s) score at least "
                              f"{report['suspect_threshold']:.2f}")
    assert f"{len(report['suspects']) - len(shown)} more ranked below it" in summary


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


def test_the_two_trust_checks_are_read_together_in_words(report_page):
    browser, made = report_page
    dependence = {d["method"]: d for d in made.report["input_dependence"]}
    lines = browser.find_elements(By.CSS_SELECTOR, "#both-checks li")
    assert [li.get_attribute("data-method") for li in lines] == [
        m["method"] for m in made.report["sanity"]["methods"]]
    for li, method in zip(lines, made.report["sanity"]["methods"], strict=True):
        d = dependence[method["method"]]
        assert f"median cosine {d['median_cosine']:.2f}" in li.text
        # One check for, the other against: the page says that both hold.
        mixed = (method["verdict"] == "passes") == bool(d["warning"])
        assert ("Both hold" in li.text) == mixed, li.text


@pytest.mark.parametrize(("verdict", "warning", "words", "both_hold"), [
    ("passes", "barely depends on the input", "depends on the model but barely on the image",
     True),
    ("passes", None, "depends on the model and on the image", False),
    ("fails", "barely depends on the input", "barely depends on the model and barely on the "
                                             "image", False),
    ("fails", None, "barely depends on the model, though it does depend on the image", True),
    ("weak", None, "depends only partly on the model, though it does depend on the image", True),
])
def test_each_pair_of_trust_check_outcomes_has_its_words(report_page, verdict, warning, words,
                                                         both_hold):
    """The report's Grad-CAM case among them: it passes the sanity check while its maps of
    different images are alike (median cosine 0.93)."""
    browser, _ = report_page
    text = browser.execute_script("return bothChecksText(arguments[0], arguments[1]);", verdict,
                                  {"median_cosine": 0.93, "warning": warning})
    assert words in text and "median cosine 0.93" in text
    assert ("Both hold" in text) == both_hold


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
