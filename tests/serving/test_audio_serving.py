"""A spectrogram (audio) model served: WAV/PNG/JSON/zip over real HTTP, validation, batching, the page.

One deployment for the whole module (each ``serve.run`` costs about 12 s on two cores): an
untrained audio-tiny generator over the tiny ``notes`` build (pitches 60..65; flute, piano).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from tests.serving.conftest import deploy
from tests.serving import test_browser as page
from tests.serving.test_browser import AUDIO_STATE_JS, console, wait_for_status

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PITCHES = [60, 61, 62, 63, 64, 65]
INSTRUMENTS = ["flute", "piano"]  # (the build sorts them)
chromium, browser = page.chromium, page.browser  # the page tests' fixtures, for the one below


@pytest.fixture(scope="module")
def audio_served(serve_port, audio_checkpoint):
    from ray import serve

    from serving.app import build_app

    yield deploy(build_app(str(audio_checkpoint)), "musicgan-audio", serve_port)
    serve.delete("musicgan-audio")


def decode_wav(content: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    y, sr = sf.read(io.BytesIO(content), dtype="float32")
    return y, sr


def test_model_info_says_spectrogram_with_its_notes(audio_served):
    info = audio_served.json("/v1/model")
    assert info["family"] == "spectrogram" and info["default_format"] == "wav"
    assert info["pitches"] == PITCHES and info["instruments"] == INSTRUMENTS
    assert info["sample_rate_hz"] == 16000 and info["clip_seconds"] == 1.0
    assert info["formats"] == ["wav", "png", "json", "zip"]
    assert "phrase_bars" not in info and "max_bars" not in info  # pianoroll-only keys stay out


def test_wav_is_a_decodable_note_of_the_clip_length(audio_served):
    info = audio_served.json("/v1/model")
    status, headers, content = audio_served.generate(pitch=60, instrument="flute", seed=3)
    assert status == 200, content[:300]
    assert headers["content-type"] == "audio/wav" and content[:4] == b"RIFF" and content[8:12] == b"WAVE"
    assert headers["x-musicgan-seed"] == "3"
    assert headers["x-musicgan-pitch"] == "60" and headers["x-musicgan-instrument"] == "flute"
    assert headers["content-disposition"] == 'attachment; filename="musicgan-3.wav"'
    y, sr = decode_wav(content)
    assert sr == info["sample_rate_hz"]
    assert abs(len(y) / sr - info["clip_seconds"]) <= 0.05, len(y) / sr
    assert np.isfinite(y).all() and np.abs(y).max() > 0  # Griffin-Lim gave sound, not silence

    from serving.schema import AUDIO_GAP_S

    status, _, three = audio_served.generate(pitch=60, instrument="flute", seed=3, n_samples=3)
    assert status == 200
    y3, _ = decode_wav(three)
    expect = 3 * info["clip_seconds"] + 2 * AUDIO_GAP_S
    assert abs(len(y3) / sr - expect) <= 0.05, (len(y3) / sr, expect)
    gap = y3[sr: sr + int(AUDIO_GAP_S * sr)]  # between the first and second note
    assert np.abs(gap).max() == 0


def test_same_body_same_bytes_other_seed_other_bytes(audio_served):
    body = dict(pitch=62, instrument="piano", seed=11, n_samples=2)
    for fmt in ("wav", "png", "json", "zip"):
        status, _, a = audio_served.generate(**body, format=fmt)
        assert status == 200, (fmt, a[:300])
        assert audio_served.generate(**body, format=fmt)[2] == a, f"{fmt}: same body, different bytes"
    wav = audio_served.generate(**body)[2]
    assert audio_served.generate(**dict(body, seed=12))[2] != wav
    assert audio_served.generate(**dict(body, pitch=63))[2] != wav
    assert audio_served.generate(**dict(body, instrument="flute"))[2] != wav


def test_png_json_and_zip(audio_served):
    status, headers, png = audio_served.generate(pitch=61, instrument="piano", seed=2, n_samples=2, format="png")
    assert status == 200 and headers["content-type"] == "image/png" and png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size[0] > 100

    status, headers, body = audio_served.generate(pitch=61, instrument="piano", seed=2, n_samples=2, format="json")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert (doc["pitch"], doc["pitch_name"], doc["instrument"], doc["seed"]) == (61, "C#4", "piano", 2)
    assert doc["sample_rate_hz"] == 16000 and doc["family"] == "spectrogram"
    assert len(doc["samples"]) == 2 and len(doc["samples"][0]["band_mean_db"]) == doc["n_mels"] == 80
    assert len(body) < 20_000  # a summary, not the whole mel

    status, headers, z = audio_served.generate(pitch=61, instrument="piano", seed=2, n_samples=2, format="zip")
    assert status == 200 and headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(z))
    assert archive.namelist() == ["sample_000_piano_C#4.wav", "sample_001_piano_C#4.wav", "spectrogram.png",
                                  "samples.json", "mels.npy"]
    mels = np.load(io.BytesIO(archive.read("mels.npy")))
    assert mels.shape == (2, 1, 80, doc["frames"])
    y, sr = decode_wav(archive.read("sample_001_piano_C#4.wav"))
    assert sr == 16000 and abs(len(y) / sr - 1.0) <= 0.05


def test_defaults_first_note_and_server_picked_seed(audio_served):
    status, headers, a = audio_served.generate()
    assert status == 200 and headers["content-type"] == "audio/wav"
    assert headers["x-musicgan-pitch"] == "60" and headers["x-musicgan-instrument"] == "flute"
    seed = int(headers["x-musicgan-seed"])
    assert audio_served.generate(seed=seed, pitch=60, instrument="flute", format="wav")[2] == a


@pytest.mark.parametrize("body, expect", [
    ({"pitch": 90}, ["pitch 90", "60..65"]),
    ({"pitch": 200}, ["pitch"]),  # not a MIDI number at all
    ({"instrument": "violin"}, ["violin", "flute, piano"]),
    ({"instrument": "x" * 65}, ["instrument"]),
    ({"format": "midi"}, ["midi", "wav"]),
    ({"n_bars": 4}, ["n_bars", "spectrogram"]),
    ({"tempo_qpm": 120}, ["tempo_qpm"]),
    ({"temperature": 0.5, "condition": "notes"}, ["temperature", "condition"]),
    ({"n_samples": 17}, ["n_samples"]),
    ({"pitch_name": "C4"}, ["pitch_name"]),  # unknown fields are refused
])
def test_bad_audio_bodies_get_a_clear_422(audio_served, body, expect):
    status, headers, content = audio_served.generate(**{"seed": 1, **body})
    assert status == 422, content[:300]
    assert headers["content-type"] == "application/json"
    text = content.decode()
    assert all(e in text for e in expect), text
    assert "Traceback" not in text


def test_pianoroll_models_refuse_pitch_and_instrument():
    """The pianoroll side of the same check (the pianoroll app is the other module's deployment)."""
    from fastapi import HTTPException

    from serving.schema import GenerateRequest, check_family_fields

    pianoroll = SimpleNamespace(family="pianoroll")
    assert check_family_fields(GenerateRequest(), pianoroll) == "midi"  # its default format is unchanged
    for body in ({"pitch": 60}, {"instrument": "flute"}):
        with pytest.raises(HTTPException) as info:
            check_family_fields(GenerateRequest(**body), pianoroll)
        assert info.value.status_code == 422 and next(iter(body)) in info.value.detail
        assert "spectrogram" in info.value.detail


def test_concurrent_requests_batch_without_changing_bytes(audio_served):
    bodies = [dict(seed=100 + k, pitch=PITCHES[k % 6], instrument=INSTRUMENTS[k % 2], n_samples=1 + k % 3)
              for k in range(16)]
    alone = [audio_served.generate(**b) for b in bodies]
    assert all(r[0] == 200 for r in alone)
    before = audio_served.json("/healthz")
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda b: audio_served.generate(**b), bodies))
    after = audio_served.json("/healthz")
    served_n, forwards = after["served"] - before["served"], after["forwards"] - before["forwards"]
    assert served_n == 16 and forwards < served_n, (served_n, forwards)  # some shared a forward
    for b, (status, _, content), (_, _, solo) in zip(bodies, together, alone):
        assert status == 200 and content == solo, f"{b}: batched bytes differ from the same request alone"


def test_python_client_generate_audio(audio_served):
    from musicgan.client import ClientError, generate_audio

    wav = generate_audio(audio_served.base, 64, "piano", n_samples=2, seed=9)
    assert wav == audio_served.generate(pitch=64, instrument="piano", n_samples=2, seed=9)[2]
    y, sr = decode_wav(wav)
    assert abs(len(y) / sr - 2.25) <= 0.05
    with pytest.raises(ClientError) as info:
        generate_audio(audio_served.base, 59, "piano")
    assert info.value.status == 422 and "60..65" in str(info.value.detail)


# --- the page in a real browser ---------------------------------------------------------------

FETCH_B64_JS = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => {
  const u = new Uint8Array(b); let s = "";
  for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
  done(btoa(s));
}).catch(e => done("error: " + e));
"""

IMAGE_JS = ("const i = document.getElementById('roll');"
            "return {src: i.src, complete: i.complete, w: i.naturalWidth, alt: i.alt,"
            "        display: getComputedStyle(i).display};")


def test_page_plays_a_chosen_note_and_shows_its_spectrogram(chromium, audio_served, browser):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(audio_served.base + "/")
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.getElementById('pitch').options.length") == len(PITCHES),
        "the pitch selector was never filled from /v1/model")
    assert "spectrogram" in driver.find_element("id", "model").text
    pitch, instrument = Select(driver.find_element("id", "pitch")), Select(driver.find_element("id", "instrument"))
    assert [o.text for o in pitch.options][:3] == ["60 (C4)", "61 (C#4)", "62 (D4)"]
    assert [o.text for o in instrument.options] == INSTRUMENTS
    for control in ("n_bars", "temperature", "tempo"):  # pianoroll-only: hidden for an audio model
        assert not driver.find_element("id", control).is_displayed(), control
    pitch.select_by_value("62")
    instrument.select_by_visible_text("piano")
    seed = driver.find_element("id", "seed")
    seed.clear()
    seed.send_keys("5")
    driver.find_element("id", "generate").click()

    text, status_class = wait_for_status(driver)
    assert "error" not in status_class.split() and text == "seed 5: done", f"{text!r}\nconsole:\n{console(driver)}"

    image = driver.execute_script(IMAGE_JS)
    assert image["src"].startswith("blob:") and image["complete"] and image["w"] > 0, image
    assert image["display"] == "block" and "spectrogram" in image["alt"], image

    audio = driver.execute_async_script(AUDIO_STATE_JS)
    assert audio["src"].startswith("blob:"), audio
    assert audio["error"] is None, f"media error {audio}\nconsole:\n{console(driver)}"
    assert audio["readyState"] >= 1 and abs(audio["duration"] - 1.0) <= 0.05, audio

    # what the page plays is exactly the server's answer for the note chosen (pitch, instrument, seed)
    played = driver.execute_async_script(FETCH_B64_JS, audio["src"])
    assert not played.startswith("error"), played
    expect = audio_served.generate(pitch=62, instrument="piano", seed=5, n_samples=1, format="wav")[2]
    assert base64.b64decode(played) == expect

    link = driver.find_element("id", "download")
    assert link.is_displayed() and link.get_attribute("download") == "musicgan-5.wav"
    assert link.get_attribute("href").startswith("blob:")

    # two notes: one WAV of two clips and a gap
    samples = driver.find_element("id", "n_samples")
    samples.clear()
    samples.send_keys("2")
    old_src = audio["src"]
    driver.find_element("id", "generate").click()
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return document.getElementById('audio').src") != old_src, "the second note never arrived")
    text, status_class = wait_for_status(driver)
    assert text == "seed 5: done", (text, console(driver))
    audio = driver.execute_async_script(AUDIO_STATE_JS)
    assert audio["error"] is None and abs(audio["duration"] - 2.25) <= 0.05, audio
    assert driver.find_element("id", "generate").is_enabled()
