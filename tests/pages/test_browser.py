"""The pages in a real headless Chromium: submit through `/`, follow `/jobs/{id}`, look."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import requests

webdriver = pytest.importorskip("selenium.webdriver")
from browsing import OUTPUT, follow, images_loaded, option_values, ready  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver: "
    "tests/pages/install-chromium.sh (make test runs it)")


def test_submit_through_the_page_and_see_every_map(browser, api_url, named_model, images):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 30)
    browser.get(api_url + "/")
    wait.until(lambda d: named_model in option_values(d, "model"))
    Select(browser.find_element(By.ID, "model")).select_by_value(named_model)
    browser.find_element(By.CSS_SELECTOR, "input[value=guided_backprop]").click()
    files = browser.find_element(By.ID, "files")
    files.send_keys("\n".join(str(p) for p in images(3)))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#file-list li")) == 3
    browser.save_screenshot(str(OUTPUT / "submit.png"))
    browser.find_element(By.ID, "submit").click()

    wait.until(lambda d: "/jobs/" in d.current_url)
    ready(browser)
    assert browser.find_element(By.ID, "status").text.lower() == "succeeded"
    cards = browser.find_elements(By.CSS_SELECTOR, "#grid .card")
    assert len(cards) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "#grid figure.output")) == 6
    prediction = cards[0].find_element(By.CSS_SELECTOR, ".pred").text
    assert re.fullmatch(r"→ [a-z]+ \(\d\) · [\d.]+%", prediction), prediction
    loaded = images_loaded(browser)
    assert loaded == 3 * 2 * 4  # per item and method: heatmap, overlay, a colour bar each
    links = browser.find_elements(By.CSS_SELECTOR, "#grid .links a")
    assert {a.text for a in links} == {"npy", "png", "overlay"}
    assert all(a.get_attribute("download") for a in links)
    browser.save_screenshot(str(OUTPUT / "job.png"))


def test_try_an_example_without_a_file(browser, api_url, named_model):
    """The "Try an example" control sends a bundled photo to the chosen model (on this stack
    the built-in model is off, so the tiny one)."""
    wait = WebDriverWait(browser, 30)
    browser.get(api_url + "/")
    wait.until(lambda d: named_model in option_values(d, "model"))
    wait.until(lambda d: option_values(d, "example") == ["chelsea", "coffee", "rocket"])
    Select(browser.find_element(By.ID, "model")).select_by_value(named_model)
    Select(browser.find_element(By.ID, "example")).select_by_value("coffee")
    assert "Rachel Michetti" in browser.find_element(By.ID, "example-credit").text
    browser.find_element(By.ID, "try-example").click()
    wait.until(lambda d: "/jobs/" in d.current_url)
    ready(browser)
    assert browser.find_element(By.ID, "status").text.lower() == "succeeded"
    assert browser.find_element(By.CSS_SELECTOR, "#grid .card .input").text.startswith(
        "0: coffee.png")
    loaded = images_loaded(browser)
    assert loaded == 4  # heatmap, overlay, a colour bar each
    browser.save_screenshot(str(OUTPUT / "example.png"))


def test_drop_zone_takes_dropped_files(browser, api_url):
    browser.get(api_url + "/")
    browser.execute_script("""
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array([137, 80, 78, 71])], "dropped.png",
                              {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    """)
    assert browser.find_element(By.ID, "file-list").text.startswith("dropped.png")


def test_paging_through_a_job(browser, api_url, tiny_model, images):
    from saliency_client import Client

    with Client(api_url) as client:
        job = client.submit(images(1) * 5, model=tiny_model, outputs=["png"])
        job.wait(timeout=60, progress=False)
    browser.get(f"{api_url}/jobs/{job.id}?limit=2")
    seen = []
    for _ in range(3):
        ready(browser)
        seen += [c.text.split(":")[0] for c in browser.find_elements(By.CSS_SELECTOR,
                                                                      "#grid .card .input")]
        nxt = browser.find_element(By.ID, "next")
        if not nxt.is_displayed():
            break
        follow(browser, nxt)
    assert seen == ["0", "1", "2", "3", "4"]
    follow(browser, browser.find_element(By.ID, "prev"))
    ready(browser)
    assert browser.find_element(By.CSS_SELECTOR, "#grid .card .input").text.startswith("2:")


def test_with_api_keys_the_page_asks_for_a_key_once(browser, stack, stack_model, images):
    """On file storage the maps come through the API with the key; on S3, presigned."""
    browser.get(stack.url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "auth").is_displayed())
    browser.find_element(By.ID, "auth-key").send_keys(stack.api_keys["alice"])
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#auth button"))
    WebDriverWait(browser, 30).until(lambda d: stack_model.name in option_values(d, "model"))
    assert not browser.find_element(By.ID, "auth").is_displayed()
    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in images(2)))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 30).until(lambda d: "/jobs/" in d.current_url)
    ready(browser)
    loaded = images_loaded(browser)
    assert loaded == 2 * 4
    browser.save_screenshot(str(OUTPUT / f"job-with-key-{stack.backend.name}.png"))


def submitted(browser, api_url: str, model: str, fill) -> dict:
    """Fill the form on `/` (`fill(browser)` after the model is chosen), submit it, and
    cancel the job it made (its page is not looked at); the job as the API echoes it."""
    wait = WebDriverWait(browser, 30)
    browser.get(api_url + "/")
    wait.until(lambda d: model in option_values(d, "model"))
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    fill(browser)
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: "/jobs/" in d.current_url)
    job_id = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    job = requests.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
    requests.delete(f"{api_url}/v1/jobs/{job_id}", timeout=10)
    return job


def choose(browser, value: str):
    browser.find_element(By.CSS_SELECTOR, f"input[name=kind][value={value}]").click()


def typed(browser, element_id: str, text: str):
    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def test_the_home_page_submits_methods_with_parameters_and_the_sanity_check(
        browser, api_url, named_model, images):
    def fill(d):
        d.find_element(By.CSS_SELECTOR, "input[name=methods][value=smoothgrad]").click()
        d.find_element(By.CSS_SELECTOR,
                       ".method-choice:has(input[value=smoothgrad]) summary").click()
        samples = d.find_element(By.CSS_SELECTOR, "[data-method=smoothgrad][data-param=samples]")
        samples.clear()
        samples.send_keys("4")
        typed(d, "sanity-sample", "2")
        d.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in images(2)))

    job = submitted(browser, api_url, named_model, fill)
    assert job["kind"] == "attribution"
    smoothgrad = [m for m in job["methods"] if isinstance(m, dict) and m["name"] == "smoothgrad"]
    assert len(smoothgrad) == 1 and smoothgrad[0]["samples"] == 4  # the others at their defaults
    # the default method, its defaults filled in
    assert {"name": "gradient", "render": "heatmap"} in job["methods"]
    assert job["audit"] == {"sanity": {"sample": 2}}


def test_the_home_page_submits_an_audit_of_a_data_set(browser, api_url, named_model,
                                                       file_backend, images):
    folder = file_backend.dataset_dir / "home-page"
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(images(2)):
        shutil.copy(path, folder / f"{i}.png")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"uri": f"{i}.png", "label": i}) + "\n"
                                for i in range(2)))
    manifest = manifest.as_uri()

    def fill(d):
        d.find_element(By.CSS_SELECTOR, "#dataset-box summary").click()
        typed(d, "dataset-uri", manifest)
        Select(d.find_element(By.ID, "target-kind")).select_by_value("label")

    job = submitted(browser, api_url, named_model, fill)
    assert job["dataset"]["manifest"] == manifest and job["target"] == "label"


def test_the_home_page_submits_a_top_activations_job(browser, api_url, named_model, images):
    def fill(d):
        choose(d, "top_activations")
        typed(d, "top-layer", "layer1")
        typed(d, "top-channels", "0, 2")
        typed(d, "top-k", "2")
        Select(d.find_element(By.ID, "top-method")).select_by_value("gradient")
        d.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in images(2)))

    job = submitted(browser, api_url, named_model, fill)
    assert (job["kind"], job["layer"], job["channels"], job["k"]) == (
        "top_activations", "layer1", [0, 2], 2)
    assert [m if isinstance(m, str) else m["name"] for m in job["methods"]] == ["gradient"]


def test_the_home_page_submits_a_visualization_without_an_image(browser, api_url, named_model):
    def fill(d):
        choose(d, "visualize")
        assert not d.find_element(By.ID, "drop").is_displayed()
        typed(d, "vis-classes", "3, 4")
        typed(d, "vis-steps", "8")
        typed(d, "vis-seed", "5")
        Select(d.find_element(By.ID, "vis-parametrization")).select_by_value("pixel")

    job = submitted(browser, api_url, named_model, fill)
    assert job["kind"] == "visualize"
    assert job["objective"] == [{"class": 3}, {"class": 4}]
    assert (job["steps"], job["seed"], job["regularizers"]["parametrization"]) == (8, 5, "pixel")

    def channel(d):
        choose(d, "visualize")
        d.find_element(By.CSS_SELECTOR, "input[name=objective-kind][value=channel]").click()
        typed(d, "vis-layer", "layer2")
        typed(d, "vis-channel", "7")
        typed(d, "vis-position", "1,2")

    job = submitted(browser, api_url, named_model, channel)
    assert job["objective"] == [{"layer": "layer2", "channel": 7, "position": [1, 2]}]
