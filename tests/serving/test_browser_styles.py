"""The page offers a styles model's styles: headless Chromium against a model conditioned on two
styles. The style picker is shown, named "style", lists the model's styles (from ``GET /v1/model``),
and the style picked is the ``condition`` the page sends with its request."""

from __future__ import annotations

import json

import pytest

from tests.checkpoints import save_untrained
from tests.serving.conftest import deploy
from tests.serving.test_browser import browser, chromium, console, open_page, set_value, wait_for_status  # noqa: F401

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STYLES = ["bach", "palestrina"]

# record every JSON body the page sends (url, body), then let the request go on as it would
RECORD_FETCH_JS = """
window.__sent = [];
const original = window.fetch;
window.fetch = (url, options) => {
  if (options && typeof options.body === "string") window.__sent.push([String(url), options.body]);
  return original(url, options);
};
"""


@pytest.fixture(scope="module")
def served_styles(serve_port, bach_data, tmp_path_factory):
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest
    from serving.app import build_app

    data = {**ckpt.data_info(load_manifest(bach_data.out)), "labels": STYLES}
    path = save_untrained(tmp_path_factory.mktemp("styles") / "checkpoint_000002", "cpu-tiny", data, seed=3)
    return deploy(build_app(str(path)), "musicgan", serve_port)


def test_page_offers_the_styles_and_sends_the_one_picked(chromium, served_styles, browser):
    from selenium.webdriver.support.ui import Select

    driver = browser
    open_page(driver, served_styles.base)
    label = driver.find_element("id", "condition-label")
    assert label.is_displayed(), console(driver)
    assert driver.find_element("id", "condition-name").text == "style"
    picker = Select(driver.find_element("id", "condition"))
    assert [o.get_attribute("value") for o in picker.options] == STYLES
    picker.select_by_value("palestrina")
    driver.execute_script(RECORD_FETCH_JS)
    set_value(driver, "seed", 4)
    driver.find_element("id", "generate").click()
    text, status_class = wait_for_status(driver)
    assert "error" not in status_class.split() and "done" in text, f"status {text!r}\nconsole:\n{console(driver)}"
    sent = [json.loads(body) for url, body in driver.execute_script("return window.__sent")
            if url.endswith("/v1/generate")]
    assert sent and all(b["condition"] == "palestrina" for b in sent), sent
