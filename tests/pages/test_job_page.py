"""An attribution job's page in headless Chromium: under each output, its coverage and
warnings, a colour bar per picture that prints the values of the output's `colorbars`, and a
picture enlarged on a click. The job is real: DeconvNet (warned about on a model without
max-pooling, drawn `signed`) and the gradient (drawn as a heatmap) on a seeded MobileNetV2."""

from __future__ import annotations

import shutil

import pytest
import requests

webdriver = pytest.importorskip("selenium.webdriver")
from browsing import images_loaded, ready, screenshot  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver: tests/pages/install-chromium.sh")


@pytest.fixture(scope="module")
def page(module_browser, deconvnet_job):
    """The job's page, rendered, and the job's outputs as `/items` gives them."""
    made = deconvnet_job
    module_browser.get(f"{made.url}/jobs/{made.job['id']}")
    ready(module_browser)
    images_loaded(module_browser)
    items = requests.get(f"{made.url}/v1/jobs/{made.job['id']}/items", timeout=10).json()
    return module_browser, [out for item in items["items"] for out in item["outputs"]]


def figures(browser):
    return browser.find_elements(By.CSS_SELECTOR, "#grid figure.output")


def test_each_output_shows_its_coverage_and_its_warnings(page):
    browser, outputs = page
    assert len(figures(browser)) == len(outputs) == 4
    for figure, out in zip(figures(browser), outputs, strict=True):
        c = out["coverage"]
        assert figure.find_element(By.CSS_SELECTOR, ".coverage").text == (
            f"coverage: {c['overridden']} of {c['relu_calls']} rectifiers through the rule · "
            f"{c['applied']} rule applications"), out["method"]
        shown = [li.text for li in figure.find_elements(By.CSS_SELECTOR, ".warnings li")]
        assert shown == out.get("warnings", []), out["method"]
    assert any(out.get("warnings") for out in outputs if out["method"] == "deconvnet")
    assert {out["params"]["render"] for out in outputs} == {"signed", "heatmap"}
    screenshot(browser, "job-coverage")


def test_each_picture_has_a_colour_bar_with_the_outputs_values(page):
    browser, outputs = page
    for figure, out in zip(figures(browser), outputs, strict=True):
        pictures = figure.find_elements(By.CSS_SELECTOR, ".picture")
        assert [p.get_attribute("data-kind") for p in pictures] == ["png", "overlay"]
        for picture in pictures:
            bar = out["colorbars"][picture.get_attribute("data-kind")]
            src = picture.find_element(By.CSS_SELECTOR, ".colorbar img").get_attribute("src")
            assert src.endswith("colormap=signed") == (bar["colormap"] == "signed")
            ticks = [float(t.text) for t in picture.find_elements(By.CSS_SELECTOR, ".tick")]
            middle = (bar["low"] + bar["high"]) / 2
            assert ticks == pytest.approx([bar["low"], middle, bar["high"]], rel=6e-3,
                                          abs=1e-12), out["method"]
        if out["params"]["render"] == "signed":
            assert out["colorbars"]["png"]["colormap"] == "signed"
            assert out["colorbars"]["png"]["low"] == -out["colorbars"]["png"]["high"]


def test_a_click_enlarges_a_picture_with_its_colour_bar(page):
    browser, outputs = page
    picture = figures(browser)[0].find_element(By.CSS_SELECTOR, ".picture")
    small = picture.find_element(By.TAG_NAME, "img")
    small.click()
    dialog = WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "enlarged") if d.execute_script(
            "const d = document.getElementById('enlarged'); return d && d.open;") else False)
    big = dialog.find_element(By.TAG_NAME, "img")
    assert big.get_attribute("src") == small.get_attribute("src")
    assert big.size["width"] >= 3 * small.size["width"]
    assert [t.text for t in dialog.find_elements(By.CSS_SELECTOR, ".tick")] == [
        t.text for t in picture.find_elements(By.CSS_SELECTOR, ".tick")]
    screenshot(browser, "job-enlarged")
    dialog.click()
    assert not browser.execute_script("return document.getElementById('enlarged').open;")
