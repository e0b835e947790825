"""The listening page in a real browser: headless Chromium driven by Selenium.

The API tests check the bytes ``/v1/generate`` returns; they cannot tell whether the page's
JavaScript wires them up: whether the pianoroll decodes as an image, whether Chromium can play
the WAV (it reads the header and finds a duration), whether the MIDI link downloads a MIDI file,
and whether a server error reaches the user instead of vanishing in the console. These tests do.

Chromium and chromedriver come from the system (apt: ``chromium``, ``chromium-driver``); when they
are missing and we are root with apt-get, the test installs them, otherwise it skips. Selenium
Manager is never used: it would try to download a driver, and CI has no internet beyond package
registries.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
GENERATE_TIMEOUT_S = 60  # three /v1/generate calls on a cpu-tiny model: a few seconds in practice


def _which_browser() -> tuple[str | None, str | None]:
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    return browser, shutil.which("chromedriver")


def _apt_install() -> str:
    """Install Chromium and its driver; returns what went wrong ('' if apt-get succeeded)."""
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:  # a fresh image may have no package lists yet
            subprocess.run(["apt-get", "update"], check=False, env=env, capture_output=True, timeout=300)
            r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return "" if r.returncode == 0 else r.stderr.strip()[-300:]


def find_chromium() -> tuple[str, str]:
    """(browser binary, chromedriver); installs them with apt when possible, else skips."""
    browser, driver = _which_browser()
    problem = ""
    if not (browser and driver):
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
            problem = _apt_install()
            browser, driver = _which_browser()
        else:
            problem = "not root or no apt-get, so not installing them"
    if not (browser and driver):
        missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
        pytest.skip(f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)"
                    + (f": {problem}" if problem else ""))
    return browser, driver


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, chromedriver) paths, or a skip. Tests list it before ``served`` so that a machine
    without a browser skips at once instead of first building data and starting Ray and Serve."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium not installed (make install adds it)")
    return find_chromium()


@pytest.fixture
def browser(chromium, tmp_path):
    """A headless Chromium session, quit whatever the test does."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new",
                "--no-sandbox",  # tests often run as root in containers, where the sandbox cannot start
                "--disable-gpu",
                "--disable-dev-shm-usage",  # small /dev/shm in containers crashes tabs
                "--autoplay-policy=no-user-gesture-required",  # so play() works without a click
                "--window-size=1280,1000",
                f"--user-data-dir={tmp_path / 'profile'}"):  # own profile: parallel runs do not collide
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console output, for failure messages
    # an explicit driver path: Selenium Manager (which would download one) is never consulted
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


def console(driver) -> str:
    from selenium.common.exceptions import WebDriverException

    try:
        return "\n".join(f"{e['level']}: {e['message']}" for e in driver.get_log("browser")) or "(empty)"
    except WebDriverException as e:  # the log is only for messages: never fail on it
        return f"(no console log: {e})"


def open_page(driver, base: str) -> None:
    """Load the page and wait until /v1/model has filled in the model line and the bars select."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    model = driver.find_element("id", "model")
    WebDriverWait(driver, 30).until(lambda d: not model.text.startswith("loading"),
                                    "model info never loaded")
    assert not model.text.startswith("could not"), (model.text, console(driver))
    # the bars select is built from the model info; without options n_bars would be sent as 0
    assert driver.execute_script("return document.getElementById('n_bars').options.length") >= 1


def set_value(driver, element_id: str, value) -> None:
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(str(value))


def wait_for_status(driver, timeout: float = GENERATE_TIMEOUT_S) -> tuple[str, str]:
    """Wait for the request to finish ('done' or an error); returns the status (text, class)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def finished(d):
        # text and class in one read: the page sets them together, and two separate WebDriver
        # calls can straddle that update (stale "generating..." text with the new "error" class)
        text, cls = d.execute_script("const s = document.getElementById('status');"
                                     "return [s.textContent, s.className];")
        return (text, cls) if ("done" in text or "error" in cls.split() or text.startswith("error")) else False

    return WebDriverWait(driver, timeout).until(
        finished, "generation never finished: status stayed "
                  f"{driver.find_element('id', 'status').text!r}")


# media readiness, read inside the page: resolves on metadata, on error, or after 20 s with what it has
AUDIO_STATE_JS = """
const done = arguments[arguments.length - 1];
const a = document.getElementById("audio");
const state = () => ({src: a.src, readyState: a.readyState, duration: a.duration,
                      error: a.error ? {code: a.error.code, message: a.error.message} : null});
if (a.readyState >= 1 || a.error) { done(state()); return; }
a.addEventListener("loadedmetadata", () => done(state()), {once: true});
a.addEventListener("error", () => done(state()), {once: true});
setTimeout(() => done(state()), 20000);
"""

# actually play a little: play() resolves and the clock moves (autoplay allowed by the flag above)
AUDIO_PLAY_JS = """
const done = arguments[arguments.length - 1];
const a = document.getElementById("audio");
a.muted = true;
a.play().then(() => setTimeout(() => { const t = a.currentTime; a.pause(); done({ok: true, t: t}); }, 500),
              (e) => done({ok: false, err: String(e)}));
"""

FETCH_HEAD_JS = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(r => r.arrayBuffer())
  .then(b => done({size: b.byteLength, head: Array.from(new Uint8Array(b.slice(0, 4)))}))
  .catch(e => done({error: String(e)}));
"""


def test_page_generates_playable_audio_image_and_midi(chromium, served, browser):
    driver = browser
    open_page(driver, served.base)
    set_value(driver, "seed", 5)
    driver.find_element("id", "generate").click()

    text, status_class = wait_for_status(driver)
    assert "error" not in status_class.split() and "done" in text, f"status {text!r}\nconsole:\n{console(driver)}"
    assert text == "seed 5: done", text  # the seed we typed is the one used

    # the pianoroll: a decoded PNG, shown
    roll = driver.execute_script(
        "const i = document.getElementById('roll');"
        "return {src: i.src, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,"
        "        display: getComputedStyle(i).display};")
    assert roll["src"].startswith("blob:"), roll
    assert roll["complete"] and roll["w"] > 100 and roll["h"] > 10, roll  # naturalWidth 0 = could not decode
    assert roll["display"] == "block", roll

    # the audio: Chromium parsed the WAV (metadata, a real duration) and reports no media error
    audio = driver.execute_async_script(AUDIO_STATE_JS)
    assert audio["src"].startswith("blob:"), audio
    assert audio["error"] is None, f"media error {audio}\nconsole:\n{console(driver)}"
    assert audio["readyState"] >= 1, audio  # HAVE_METADATA
    assert audio["duration"] is not None and audio["duration"] > 1, audio  # 2 samples of 4 bars at 90 bpm: ~ 13 s
    played = driver.execute_async_script(AUDIO_PLAY_JS)
    assert played["ok"] and played["t"] > 0, played

    # the download link: a MIDI file under a .mid name
    link = driver.find_element("id", "download")
    href, download = link.get_attribute("href"), link.get_attribute("download")
    assert href.startswith("blob:"), href
    assert download and download.endswith(".mid"), download
    assert download == "musicgan-5.mid", download
    assert link.is_displayed()
    midi = driver.execute_async_script(FETCH_HEAD_JS, href)
    assert "error" not in midi, midi
    assert bytes(midi["head"]) == b"MThd", midi
    assert midi["size"] > 14, midi  # more than a bare header

    assert driver.find_element("id", "generate").is_enabled()  # ready for the next one
    # an unconditional-only model: today's controls only, no assistant (its routes would refuse)
    assert driver.execute_script("return window.musicgan.info.tasks") in (None, ["generate"])
    for element_id in ("assist", "edit", "canvas"):
        assert not driver.find_element("id", element_id).is_displayed(), element_id


def test_page_reports_server_errors(chromium, served, browser):
    """A request the server rejects (422) must show as an error on the page, not fail silently."""
    driver = browser
    open_page(driver, served.base)
    set_value(driver, "seed", 5)
    # tempo 500 is out of the input's min/max, so the browser's own form validation would stop the
    # submit before any request; that protects users, but here we want the server's answer, so
    # validation is switched off and the value set directly
    assert driver.execute_script(
        "const t = document.getElementById('tempo'); t.value = '500';"
        "const blocked = !t.checkValidity();"  # (the browser would have blocked it)
        "document.getElementById('form').noValidate = true; return blocked;")
    driver.find_element("id", "generate").click()

    text, status_class = wait_for_status(driver)
    assert "error" in status_class.split(), (text, status_class, console(driver))
    assert "422" in text, text
    assert "tempo_qpm" in text, text  # the server's detail reaches the user, not just the code
    assert "done" not in text
    assert driver.find_element("id", "generate").is_enabled()  # the button comes back after a failure
    # nothing half-rendered from the failed request
    assert driver.execute_script("return document.getElementById('audio').getAttribute('src')") is None
