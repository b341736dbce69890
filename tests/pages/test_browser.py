"""The pages in a real headless Chromium: submit through `/`, follow `/jobs/{id}`, look."""

from __future__ import annotations

import re
import shutil

import pytest

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
