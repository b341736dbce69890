"""Nothing clipped at 1280 px: the job, report, top-activations and visualize pages of real jobs,
and the home page in each kind, in headless Chromium, laid out at 1280 × 800, with no element's
content wider or taller than its box and no chart label outside its chart; screenshots in
test-output/pages/.

The jobs bring what overflowed before: items named by long `file://` URIs (a manifest without
ids), a model whose last block has a long name (a seeded MobileNetV2's `classifier.1`) under the
sanity check, no boxes (so no box metric to draw), long upload names, long layer names.
"""

from __future__ import annotations

import pytest
from browsing import at_width, clipped, full_screenshot, images_loaded, option_values, ready
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def open_page(browser, url: str):
    at_width(browser)
    browser.get(url)
    ready(browser)
    images_loaded(browser)


def assert_nothing_clipped(browser, name: str):
    full_screenshot(browser, f"{name}-1280")
    problems = clipped(browser)
    assert not problems, "\n".join(problems)


def test_the_report_page(browser, uri_audit):
    made = uri_audit
    open_page(browser, f"{made.url}/jobs/{made.job['id']}/report")
    assert_nothing_clipped(browser, "report-uris")


def test_the_report_page_names_items_short_and_draws_only_charts_with_data(browser, uri_audit):
    made = uri_audit
    open_page(browser, f"{made.url}/jobs/{made.job['id']}/report")
    links = browser.find_elements(By.CSS_SELECTOR, "#suspects figcaption a")
    shown = [s for s in made.report["suspects"]
             if s["score"] >= made.report["suspect_threshold"]]
    assert len(links) == len(shown)
    summary = browser.find_element(By.ID, "suspects-summary").text
    assert summary.endswith(f"{len(made.report['suspects']) - len(shown)} more ranked below it "
                            "are in the report JSON.")
    for link, entry in zip(links, shown, strict=True):
        assert link.text == entry["input"]["uri"].rsplit("/", 1)[1]
        assert link.get_attribute("title") == entry["input"]["uri"]
    for method in made.report["methods"]:
        assert method["metrics"]["energy_in_box"]["count"] == 0  # no item has a box
        article = browser.find_element(By.CSS_SELECTOR,
                                       f"article.method[data-method={method['method']}]")
        assert not article.find_elements(By.CSS_SELECTOR, "figure[data-metric=energy_in_box]")
        assert article.find_elements(By.CSS_SELECTOR, "figure[data-metric=border_energy] svg")
        note = article.find_element(By.CSS_SELECTOR, ".no-data li[data-metric=energy_in_box]")
        assert "no item has a box or mask" in note.text


def test_the_job_page(browser, uri_audit):
    made = uri_audit
    open_page(browser, f"{made.url}/jobs/{made.job['id']}")
    assert_nothing_clipped(browser, "job-uris")


def test_the_top_activations_page(browser, long_named_top_activations):
    made = long_named_top_activations
    open_page(browser, f"{made.url}/jobs/{made.job['id']}")
    assert_nothing_clipped(browser, "top-activations-long-names")


def test_the_visualize_page(browser, small_visualize):
    made = small_visualize
    open_page(browser, f"{made.url}/jobs/{made.job['id']}")
    figures = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "#visuals .figures")]
    assert len(figures) == len(made.report["items"]) == 2

    def shown(value: float) -> str:  # as the page writes a number
        return browser.execute_script("return Number(arguments[0]).toPrecision(4);", value)

    for text, entry in zip(figures, made.report["items"], strict=True):
        assert text == (f"final {shown(entry['final'])} · mean of the last 5 % of steps "
                        f"{shown(entry['final_mean'])} · best {shown(entry['best']['value'])} "
                        f"at step {entry['best']['step']}")
    assert_nothing_clipped(browser, "visualize")


@pytest.mark.parametrize("kind", ["attribution", "top_activations", "visualize"])
def test_the_home_page_in_each_kind(browser, api_url, tiny_model, kind):
    at_width(browser)
    browser.get(api_url + "/")
    WebDriverWait(browser, 30).until(lambda d: tiny_model in option_values(d, "model"))
    browser.find_element(By.CSS_SELECTOR, f"input[name=kind][value={kind}]").click()
    for summary in browser.find_elements(By.CSS_SELECTOR, "details summary"):
        if summary.is_displayed():
            summary.click()  # every method's parameters, and the data set, open
    assert_nothing_clipped(browser, f"submit-{kind}")
