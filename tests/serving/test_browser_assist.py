"""The assistant page in a real browser: headless Chromium against a masked model.

The route tests check what ``/v1/harmonize``, ``/v1/inpaint`` and ``/v1/continue`` answer; these
check that the page wires them up for a person: a MIDI file chosen in the file input reaches the
server, the pianoroll the page draws itself shows given and generated notes apart, the WAV plays,
a region dragged on the canvas is the region regenerated (and the rest of the piece survives the
round trip through the page's JSON), the download is a MIDI file, and a refused upload shows the
server's reason. The page's state is read from ``window.musicgan``.
"""

from __future__ import annotations

import re

import pytest

from tests.serving.test_browser import (AUDIO_PLAY_JS, AUDIO_STATE_JS, FETCH_HEAD_JS, browser,  # noqa: F401
                                        chromium, console, open_page, set_value, wait_for_status)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ASSIST_TIMEOUT_S = 180  # three requests (json, wav, midi) on an untrained tiny masked model, 2 shared cores
STEPS_PER_BAR = 16
C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79]  # C4..G5
MELODY_QPM = 100.0


def melody_pitches() -> list[int]:
    """32 quarter notes (8 bars) walking up and down C major between C4 and G5; no pitch twice in a
    row, so each note stays a note of its own on the model's grid (a repeat could read as one held note)."""
    walk = list(range(len(C_MAJOR))) + list(range(len(C_MAJOR) - 2, 0, -1))
    return [C_MAJOR[walk[i % len(walk)]] for i in range(32)]


def write_melody(path) -> None:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=MELODY_QPM)
    inst = pretty_midi.Instrument(program=0, name="melody")
    beat_s = 60.0 / MELODY_QPM
    for i, pitch in enumerate(melody_pitches()):
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=i * beat_s, end=(i + 1) * beat_s))
    pm.instruments.append(inst)
    pm.write(str(path))


def piece(driver) -> dict:
    return driver.execute_script("return window.musicgan.piece")


def notes_of(p: dict, sample: int = 0) -> list[dict]:
    return p["samples"][sample]["notes"]


def cells(notes: list[dict]) -> dict[tuple[str, int], int]:
    """(voice, step) -> sounding pitch: what the piece says at each step, whatever the note splits."""
    out = {}
    for n in notes:
        for s in range(n["start_step"], n["end_step"]):
            out[(n["track"], s)] = n["pitch"]
    return out


def key(n: dict) -> tuple:
    return n["track"], n["pitch"], n["start_step"], n["end_step"]


def finish(driver, what: str) -> str:
    """Wait for the page's request to end; fail with the console unless it says done."""
    text, status_class = wait_for_status(driver, ASSIST_TIMEOUT_S)
    assert "error" not in status_class.split() and "done" in text, \
        f"{what}: status {text!r}\nconsole:\n{console(driver)}"
    return text


def open_assistant(driver, base: str) -> dict:
    open_page(driver, base)
    info = driver.execute_script("return window.musicgan.info")
    assert "harmonize" in info["tasks"], info.get("tasks")
    assert driver.find_element("id", "assist").is_displayed()
    return info


# pixels of each colour on the canvas, counted in the page (exact RGB matches, opaque)
CANVAS_COLOURS_JS = """
const c = document.getElementById("canvas");
const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
const hex = (i) => "#" + [d[i], d[i + 1], d[i + 2]].map((v) => v.toString(16).padStart(2, "0")).join("");
const wanted = new Set(arguments[0]);
const counts = {};
for (let i = 0; i < d.length; i += 4) {
  if (d[i + 3] !== 255) continue;
  const h = hex(i);
  if (wanted.has(h)) counts[h] = (counts[h] || 0) + 1;
}
return {counts: counts, w: c.width, h: c.height, display: getComputedStyle(c).display};
"""


def drag_bars(driver, first: int, last: int) -> None:
    """Press on bar ``first`` of the canvas, move to bar ``last``, release: a person's drag."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    a, b = (driver.execute_script("return window.musicgan.barPoint(arguments[0])", bar) for bar in (first, last))
    w, h = canvas.size["width"], canvas.size["height"]
    # offsets count from the element's centre (W3C actions)
    (ActionChains(driver).move_to_element_with_offset(canvas, int(a["x"] - w / 2), int(a["y"] - h / 2))
     .click_and_hold().move_by_offset(int(b["x"] - a["x"]), 0).release().perform())


def test_upload_harmonize_see_hear_regenerate_region_download(chromium, served_masked, browser, tmp_path):
    driver = browser
    info = open_assistant(driver, served_masked.base)
    voices = info["voices"]
    colours = driver.execute_script("return window.musicgan.colours")
    given_colour, track_colours = colours["given"], colours["tracks"]

    # 1. upload a MIDI melody through the file input and harmonize it
    melody = tmp_path / "melody.mid"
    write_melody(melody)
    driver.find_element("id", "melody_file").send_keys(str(melody))
    set_value(driver, "n_samples", 1)
    set_value(driver, "seed", 11)
    driver.find_element("id", "harmonize").click()
    text = finish(driver, "harmonize")
    assert text.startswith("harmonize melody.mid, seed 11: done"), text

    p = piece(driver)
    assert p["task"] == "harmonize" and p["seed"] == 11 and p["n_bars"] == 8, {k: p.get(k) for k in ("task", "seed", "n_bars")}
    assert p["tempo_qpm"] == pytest.approx(MELODY_QPM), p["tempo_qpm"]  # the file's tempo: the page sent none of its own
    soprano = [n for n in notes_of(p) if n["track"] == "soprano"]
    assert [n["pitch"] for n in soprano] == melody_pitches(), soprano[:4]  # the uploaded melody, in its own key
    assert [n["start_step"] for n in soprano] == [4 * i for i in range(32)]
    assert all(n["given"] for n in soprano)
    generated = [n for n in notes_of(p) if not n["given"]]
    assert {n["track"] for n in generated} <= set(voices) - {"soprano"} and generated, generated[:4]
    originality = driver.find_element("id", "originality_0").text
    assert "max overlap with training" in originality, originality
    shown = float(re.search(r"max overlap with training (\d\.\d+)", originality).group(1))
    assert shown == pytest.approx(p["samples"][0]["originality"]["max_overlap"], abs=0.0051), originality  # 2 decimals

    # 2. the canvas: given notes near-black, generated ones in voice colours, no generated soprano
    drawn = driver.execute_script(CANVAS_COLOURS_JS, [given_colour] + track_colours[:len(voices)])
    assert drawn["display"] == "block" and drawn["w"] > 100 and drawn["h"] > 100, drawn
    counts = drawn["counts"]
    assert counts.get(given_colour, 0) > 100, counts  # 32 melody notes, a few pixels each
    assert sum(counts.get(track_colours[i], 0) for i in range(1, len(voices))) > 100, counts
    assert counts.get(track_colours[0], 0) == 0, counts  # every soprano note was given

    # 3. the audio: a WAV Chromium parses and plays
    audio = driver.execute_async_script(AUDIO_STATE_JS)
    assert audio["src"].startswith("blob:") and audio["error"] is None, f"{audio}\nconsole:\n{console(driver)}"
    assert audio["duration"] > 10, audio  # 8 bars at 100 bpm: 19 s
    played = driver.execute_async_script(AUDIO_PLAY_JS)
    assert played["ok"] and played["t"] > 0, played

    # 4. select bars 3-4 by dragging, alto and tenor only, and regenerate them
    drag_bars(driver, 3, 4)
    assert driver.execute_script("return window.musicgan.selection") == {"first": 3, "last": 4}
    assert driver.find_element("id", "region_first").get_attribute("value") == "3"
    assert driver.find_element("id", "region_last").get_attribute("value") == "4"
    for v in ("soprano", "bass"):
        driver.find_element("id", f"voice_{v}").click()
    ticked = [v for v in voices if driver.find_element("id", f"voice_{v}").is_selected()]
    assert ticked == ["alto", "tenor"], ticked
    set_value(driver, "seed", 12)
    driver.find_element("id", "regenerate").click()
    text = finish(driver, "regenerate")
    assert text.startswith("inpaint bars 3-4 (alto, tenor), seed 12: done"), text  # the request was made
    sent = driver.execute_script("return window.musicgan.requests.at(-1)")
    assert sent["route"] == "/v1/inpaint" and sent["status"] == "done", sent
    assert sent["fields"]["bars"] == [3, 4] and sent["fields"]["voices"] == ["alto", "tenor"], sent
    assert sent["fields"]["notes"] == len(notes_of(p)), sent  # the whole current piece went back

    q = piece(driver)
    assert q["task"] == "inpaint" and q["n_bars"] == p["n_bars"], {k: q.get(k) for k in ("task", "n_bars")}
    first, end = 2 * STEPS_PER_BAR, 4 * STEPS_PER_BAR  # bars 3-4: steps [32, 64)
    before, after = notes_of(p), notes_of(q)
    for v in ("soprano", "bass"):  # unticked voices: every note as it was
        assert [key(n) for n in after if n["track"] == v] == [key(n) for n in before if n["track"] == v], v
    after_keys = {key(n) for n in after}
    # ticked voices: every note wholly outside the region comes back as it was, those that end
    # right where it starts (or start where it ends) included
    for n in before:
        if n["track"] in ticked and (n["end_step"] <= first or n["start_step"] >= end):
            assert key(n) in after_keys, (n, [key(m) for m in after if m["track"] == n["track"]])
    c0, c1 = cells(before), cells(after)
    outside = {k for k in c0.keys() | c1.keys() if not (k[0] in ticked and first <= k[1] < end)}
    changed = sorted(k for k in outside if c0.get(k) != c1.get(k))
    assert not changed, f"cells outside bars 3-4 of alto/tenor changed: {changed[:10]}"
    assert all(n["given"] for n in after if n["track"] not in ticked)
    assert driver.find_element("id", "originality_0").text.startswith("sample 1: max overlap with training")

    # 5. the download: the MIDI of the current (regenerated) piece
    link = driver.find_element("id", "download")
    href = link.get_attribute("href")
    assert href.startswith("blob:") and link.is_displayed(), href
    assert link.get_attribute("download").endswith(".mid")
    midi = driver.execute_async_script(FETCH_HEAD_JS, href)
    assert "error" not in midi and bytes(midi["head"]) == b"MThd" and midi["size"] > 14, midi


def test_example_melody_harmonized_then_continued(chromium, served_masked, browser):
    from selenium.webdriver.support.ui import Select

    driver = browser
    info = open_assistant(driver, served_masked.base)
    assert info["examples"], "the masked test model ships example melodies"
    example = info["examples"][0]
    Select(driver.find_element("id", "example")).select_by_value(example["id"])
    set_value(driver, "n_samples", 1)
    set_value(driver, "seed", 21)
    driver.find_element("id", "harmonize").click()
    text = finish(driver, "harmonize example")
    assert text.startswith(f"harmonize example {example['id']}, seed 21: done"), text

    p = piece(driver)
    assert p["task"] == "harmonize" and p["n_bars"] == example["n_bars"], {k: p.get(k) for k in ("task", "n_bars")}
    given = {(n["pitch"], n["start_step"]) for n in notes_of(p) if n["given"]}
    shipped = {(n["pitch"], round(n["start_beat"] * 4)) for n in example["notes"]}
    assert given and given <= shipped, sorted(given - shipped)[:5]  # the example's notes (repeats may join)
    assert {n["track"] for n in notes_of(p) if n["given"]} == {example["voice"]}

    set_value(driver, "continue_bars", 2)
    set_value(driver, "seed", 22)
    driver.find_element("id", "continue").click()
    text = finish(driver, "continue")
    assert text.startswith("continue by 2 bars, seed 22: done"), text
    q = piece(driver)
    assert q["task"] == "continue" and q["n_bars"] == p["n_bars"] + 2, {k: q.get(k) for k in ("task", "n_bars")}
    old_steps = p["n_bars"] * STEPS_PER_BAR
    c0, c1 = cells(notes_of(p)), cells(notes_of(q))
    changed = sorted(k for k in c0.keys() | c1.keys() if k[1] < old_steps and c0.get(k) != c1.get(k))
    assert not changed, f"the prompt changed: {changed[:10]}"
    assert any(n["start_step"] >= old_steps for n in notes_of(q)), "nothing written in the new bars"
    audio = driver.execute_async_script(AUDIO_STATE_JS)
    assert audio["error"] is None and audio["duration"] > 0, audio


def test_generate_on_a_masked_model_gives_a_piece_to_fill_in(chromium, served_masked, browser):
    """Generate's answer becomes the current piece too, at any whole number of hops, and its last
    bars can be regenerated in every voice with the first ones kept."""
    from selenium.webdriver.support.ui import Select

    driver = browser
    info = open_assistant(driver, served_masked.base)
    bars = info["phrase_bars"] + info["hop_bars"]  # 6: not a whole number of phrases
    Select(driver.find_element("id", "n_bars")).select_by_value(str(bars))
    set_value(driver, "n_samples", 1)
    set_value(driver, "seed", 31)
    driver.find_element("id", "generate").click()
    assert finish(driver, "generate") == "seed 31: done"
    p = piece(driver)
    assert p["task"] == "generate" and p["n_bars"] == bars, {k: p.get(k) for k in ("task", "n_bars")}
    assert notes_of(p) and not any(n.get("given") for n in notes_of(p))  # (generate's notes carry no "given")
    colours = driver.execute_script("return window.musicgan.colours")
    counts = driver.execute_script(CANVAS_COLOURS_JS, [colours["given"]] + colours["tracks"][:4])["counts"]
    assert counts.get(colours["given"], 0) == 0 and sum(counts.values()) > 100, counts  # all generated

    driver.execute_script("const f = document.getElementById('region_first'); f.value = arguments[0];"
                          "f.dispatchEvent(new Event('change'));"
                          "const l = document.getElementById('region_last'); l.value = arguments[1];"
                          "l.dispatchEvent(new Event('change'));", bars - 1, bars)
    assert driver.execute_script("return window.musicgan.selection") == {"first": bars - 1, "last": bars}
    driver.find_element("id", "regenerate").click()
    text = finish(driver, "regenerate")
    assert text.startswith(f"inpaint bars {bars - 1}-{bars} (soprano, alto, tenor, bass), seed 31: done"), text
    q = piece(driver)
    kept_steps = (bars - 2) * STEPS_PER_BAR
    c0, c1 = cells(notes_of(p)), cells(notes_of(q))
    changed = sorted(k for k in c0.keys() | c1.keys() if k[1] < kept_steps and c0.get(k) != c1.get(k))
    assert q["n_bars"] == bars and not changed, (q["n_bars"], changed[:10])


def test_refused_upload_shows_the_servers_reason(chromium, served_masked, browser, tmp_path):
    driver = browser
    open_assistant(driver, served_masked.base)
    not_midi = tmp_path / "notes.mid"
    not_midi.write_text("this is not a MIDI file\n")
    driver.find_element("id", "melody_file").send_keys(str(not_midi))
    driver.find_element("id", "harmonize").click()
    text, status_class = wait_for_status(driver, ASSIST_TIMEOUT_S)
    assert "error" in status_class.split() and text.startswith("error 422: "), (text, console(driver))
    assert "MIDI" in text, text  # the server's detail, not just the code
    assert driver.execute_script("return window.musicgan.piece") is None
    assert driver.find_element("id", "harmonize").is_enabled()
    assert driver.execute_script("return document.getElementById('audio').getAttribute('src')") is None
