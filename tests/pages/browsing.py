"""What the browser tests do again and again: wait for a page, count its loaded images, take
screenshots, find what overflows its box. The `browser` fixture (headless Chromium) is in
conftest.py."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "pages"
ALL_IMAGES_LOADED = """
const imgs = [...document.images];
return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0)
    ? imgs.length : imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.src);
"""


# Every element whose content is larger than its box, unless its overflow is meant to scroll;
# every chart label that reaches out of its chart; a page wider than the window.
CLIPPED = (Path(__file__).parent / "clipped.js").read_text()


def at_width(browser, width: int = 1280, height: int = 800):
    """Lay the page out in a viewport of exactly `width` × `height` CSS pixels."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def clipped(browser) -> list[str]:
    """What overflows its box on the page as laid out now (`CLIPPED`), in words."""
    return browser.execute_script(CLIPPED)


def option_values(browser, select_id: str) -> list[str]:
    """The values of a <select>'s options, read in one script: the page replaces the options
    once the API answers, and element handles taken before that would be stale."""
    return browser.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} option`)].map((o) => o.value);",
        select_id)


def ready(browser, timeout: float = 60):
    """Wait until the page has rendered (`body[data-ready]`); fail with the page's error."""
    state = WebDriverWait(browser, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert state == "1", browser.find_element(By.ID, "job-error").text


def images_loaded(browser, timeout: float = 20) -> int:
    """Wait until every <img> of the page has loaded; how many there are."""
    return WebDriverWait(browser, timeout).until(
        lambda d: (lambda r: r if isinstance(r, int) else False)(d.execute_script(
            ALL_IMAGES_LOADED)), message="some images did not load")


def follow(browser, link):
    """Click a link and wait until the next page has replaced this one."""
    body = browser.find_element(By.TAG_NAME, "body")
    link.click()
    WebDriverWait(browser, 30).until(staleness_of(body))


def give_key(browser, key: str):
    """Answer the page's key prompt (it reloads with the key)."""
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "auth").is_displayed())
    browser.find_element(By.ID, "auth-key").send_keys(key)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#auth button"))


def screenshot(browser, name: str):
    """The whole page as test-output/pages/<name>.png (the window grown to the page's height)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    width = browser.get_window_size()["width"]
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(width, min(max(height + 100, 600), 8000))
    browser.save_screenshot(str(OUTPUT / f"{name}.png"))


def full_screenshot(browser, name: str):
    """The whole page, as laid out in the viewport `at_width` set, as
    test-output/pages/<name>.png."""
    import base64

    OUTPUT.mkdir(parents=True, exist_ok=True)
    size = browser.execute_script("return [document.documentElement.scrollWidth, "
                                  "document.documentElement.scrollHeight]")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 16000), "scale": 1}})
    (OUTPUT / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
