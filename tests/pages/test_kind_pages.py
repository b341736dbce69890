"""The job page by kind in headless Chromium: a real `top_activations` job (on S3 with API
keys: presigned pictures), warnings beside the maps of a real DeconvNet job, and a
`visualize` job watched as it runs."""

from __future__ import annotations

import pytest
import requests
from browsing import give_key, images_loaded, ready, screenshot
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Per cell of a block: its picture's own size, its size on the page, and its caption.
CELLS = """
return [...arguments[0].querySelectorAll('.zf-cell')].map((cell) => {
  const img = cell.querySelector('img'), box = img.getBoundingClientRect();
  return [img.naturalWidth, img.naturalHeight, box.width, box.height,
          cell.querySelector('figcaption').textContent];
});
"""


@pytest.mark.parametrize("stack", ["s3"], indirect=True)
def test_a_top_activations_page_shows_each_channels_figure_labelled(browser,
                                                                    top_activations_job):
    """Per channel two labelled 3×3 blocks, the projections and their patches, each cell
    captioned with its activation, each projection cropped to its patch and shown at the
    patch's size; the projection method with the reason the service chose it."""
    made = top_activations_job
    report = made.report
    browser.get(f"{made.url}/jobs/{made.job['id']}")
    give_key(browser, made.key)
    ready(browser)
    assert report["methods"] == ["deconvnet"]  # layer1 of a resnet18 is after its max-pool
    assert browser.find_element(By.ID, "projection-reason").text == (
        f"Projection: {report['methods_reason']}.")
    channels = report["channels"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#channels section.channel")
    assert [int(r.get_attribute("data-channel")) for r in rows] == [c["channel"] for c in channels]

    def shown(value: float) -> str:  # as the page writes a number
        return browser.execute_script("return Number(arguments[0]).toPrecision(4);", value)

    for row, channel in zip(rows, channels, strict=True):
        blocks = row.find_elements(By.CSS_SELECTOR, ".zf-block")
        assert [b.get_attribute("data-block") for b in blocks] == ["deconvnet", "patches"]
        labels = [b.find_element(By.CSS_SELECTOR, ".zf-label").text for b in blocks]
        where = f" · layer {report['layer']} · channel {channel['channel']}"
        assert labels == [f"deconvnet projections{where}", f"image patches{where}"]
        projections, patches = (browser.execute_script(CELLS, b) for b in blocks)
        assert len(projections) == len(patches) == len(channel["top"]) == 3
        for rank, (unit, projection, patch) in enumerate(zip(channel["top"], projections,
                                                             patches, strict=True)):
            x0, y0, x1, y1 = unit["patch_box"]
            assert projection[:2] == patch[:2] == [x1 - x0, y1 - y0]  # cropped to the patch
            assert projection[2:4] == patch[2:4]  # and shown at the patch's size
            assert projection[2] >= x1 - x0 and projection[3] >= y1 - y0
            assert projection[4] == patch[4] == f"#{rank + 1} · {shown(unit['activation'])}"
        values = [td.text for td in row.find_elements(By.CSS_SELECTOR, "td.activation")]
        assert values == [shown(t["activation"]) for t in channel["top"]]
        assert not row.find_element(By.CSS_SELECTOR, "ul.warnings").is_displayed()
    assert images_loaded(browser) == sum(2 * len(c["top"]) for c in channels)
    assert browser.find_element(By.CSS_SELECTOR, "#report-json a").text == "report JSON"
    assert "inputs scanned" in browser.find_element(By.ID, "counts").text
    screenshot(browser, "top-activations")


def test_a_top_activations_page_shows_a_channels_warnings(browser, mobilenet_deconvnet_top):
    made = mobilenet_deconvnet_top
    browser.get(f"{made.url}/jobs/{made.job['id']}")
    ready(browser)
    (channel,) = made.report["channels"]
    assert channel["warnings"] and channel["warnings"][0].startswith("deconvnet: ")
    assert "methods_reason" not in made.report  # DeconvNet was asked for
    assert browser.find_element(By.ID, "projection-reason").text == (
        "Projection: deconvnet, as asked.")
    row = browser.find_element(By.CSS_SELECTOR, "#channels section.channel")
    shown = [li.text for li in row.find_elements(By.CSS_SELECTOR, "ul.warnings li")]
    assert shown == channel["warnings"]
    images_loaded(browser)
    screenshot(browser, "top-activations-warning")


def test_each_output_shows_its_warnings_with_its_map(browser, deconvnet_job):
    made = deconvnet_job
    browser.get(f"{made.url}/jobs/{made.job['id']}")
    ready(browser)
    items = made_items(made)
    figures = browser.find_elements(By.CSS_SELECTOR, "#grid figure.output")
    outputs = [out for item in items for out in item["outputs"]]
    assert len(figures) == len(outputs) == 4
    for figure, out in zip(figures, outputs, strict=True):
        shown = [li.text for li in figure.find_elements(By.CSS_SELECTOR, ".warnings li")]
        assert shown == out.get("warnings", []), out["method"]
    assert any(out.get("warnings") for out in outputs if out["method"] == "deconvnet")
    images_loaded(browser)
    screenshot(browser, "job-warnings")


def made_items(made) -> list[dict]:
    return requests.get(f"{made.url}/v1/jobs/{made.job['id']}/items", timeout=10).json()["items"]


STEPS, SNAPSHOT_EVERY = 1200, 100  # long enough (seconds) for the page to see it part-way
OBJECTIVES = [{"class": 3}, {"layer": "layer1", "channel": 5}]


def points(card) -> int:
    lines = card.find_elements(By.CSS_SELECTOR, ".curve-box polyline")
    return len(lines[0].get_attribute("points").split()) if lines else 0


def snapshots(card) -> int:
    return len(card.find_elements(By.CSS_SELECTOR, ".snapshots img"))


def test_a_visualize_page_shows_the_pictures_as_they_arrive(browser, api_url, named_model):
    body = {"kind": "visualize", "model": named_model, "objective": OBJECTIVES, "size": 32,
            "steps": STEPS, "snapshot_every": SNAPSHOT_EVERY, "seed": 1,
            "regularizers": {"jitter": 1, "scale": None, "rotate": None}}
    response = requests.post(f"{api_url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    browser.get(f"{api_url}/jobs/{job_id}")
    wait = WebDriverWait(browser, 120)
    cards = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#visuals .card.visual"))
    assert [c.find_element(By.CSS_SELECTOR, ".input").text for c in cards] == [
        "0: class 3 (cat)", "1: layer1 channel 5"]

    # part-way: some snapshots and part of the curve, while the job still runs
    wait.until(lambda d: any(0 < snapshots(c) < STEPS // SNAPSHOT_EVERY for c in cards))
    first_snapshot = next(c for c in cards if snapshots(c)).find_element(
        By.CSS_SELECTOR, ".snapshots img")
    assert browser.find_element(By.ID, "status").text.lower() == "running"
    assert any(0 < points(c) < STEPS for c in cards)

    ready(browser, timeout=240)
    assert browser.find_element(By.ID, "status").text.lower() == "succeeded"
    items = requests.get(f"{api_url}/v1/jobs/{job_id}/items", timeout=10).json()["items"]
    for card, item in zip(cards, items, strict=True):
        assert snapshots(card) == STEPS // SNAPSHOT_EVERY
        assert points(card) == STEPS
        src = card.find_element(By.CSS_SELECTOR, "img.picture").get_attribute("src")
        assert src.split("?")[0] == item["outputs"][0]["png"].split("?")[0]
    assert browser.find_element(By.ID, "counts").text.startswith(
        f"{STEPS * len(OBJECTIVES)} / {STEPS * len(OBJECTIVES)} steps")
    try:  # the pictures already shown were kept, not drawn again
        assert first_snapshot.get_attribute("alt") == "snapshot 1"
    except StaleElementReferenceException:
        pytest.fail("the page redrew the snapshots it already showed")
    assert images_loaded(browser) == len(OBJECTIVES) * (1 + STEPS // SNAPSHOT_EVERY)
    screenshot(browser, "visualize")


@pytest.mark.parametrize(("status", "progress", "says"), [
    ("running", {"done": 512}, "512 / 1024 steps"),
    ("running", {"done": 1024}, "1024 / 1024 steps · every step done: saving the pictures…"),
    ("running", {"done": 1024, "finalizing": True},
     "1024 / 1024 steps · finalizing: writing the results file and the report…"),
    ("succeeded", {"done": 1024}, "1024 / 1024 steps"),
])
def test_a_visualize_page_says_when_the_steps_are_done_and_when_it_is_finalizing(
        module_browser, small_visualize, status, progress, says):
    """The job stays `running` after its last step: first its chunk saves the pictures, then
    its finalizer runs (`progress.finalizing`); the page says which, not only 1024 / 1024."""
    made = small_visualize
    browser = module_browser
    if "/jobs/" not in browser.current_url:
        browser.get(f"{made.url}/jobs/{made.job['id']}")
        ready(browser)
    job = {"kind": "visualize", "status": status,
           "progress": {"total": 1024, "failed": 0, "finalizing": False, **progress}}
    assert browser.execute_script("return progressOf(arguments[0])[0];", job) == says
