"""The assistant's routes over real HTTP (issue 15): POST /v1/harmonize, /v1/continue, /v1/inpaint and
/v1/generate's phrase-by-phrase lengths, against one deployment of an untrained cpu-masked-tiny model
that ships the Bach build's originality index and example melodies (``served_masked``).

What is checked: every route in every format (and the same bytes for the same seed), batch invariance
with the routes mixed in one burst of concurrent requests (and shared forwards), the given notes coming
back unchanged (the melody, everything outside an inpainted region, a continuation's prompt) with right
``given`` flags, transposition of a melody far above the soprano, every bad upload or body with its
status and message, ``GET /v1/model``, and ``X-Musicgan-Max-Overlap`` against an offline matrix-product
recomputation on the build's training phrases. Inputs are written here, with pretty_midi.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS_PER_BAR = 16
STEPS_PER_BEAT = 4
VOICES = ["soprano", "alto", "tenor", "bass"]
PITCH_LOW = 36  # the Bach build's pitch axis: 36..83
N_PITCHES = 48
MAGIC = {"midi": ("audio/midi", b"MThd"), "wav": ("audio/wav", b"RIFF"), "png": ("image/png", b"\x89PNG"),
         "json": ("application/json", b"{"), "zip": ("application/zip", b"PK")}

# 16 quarter notes (4 bars), no pitch twice in a row (a repeat would read as one held note on the grid)
MELODY = [67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 72, 69, 71, 72, 67]
# a 4-bar chorale sketch in half notes, one list per voice, highest first; no pitch twice in a row
PIECE = {"soprano": [72, 74, 76, 74, 72, 71, 72, 74],
         "alto": [67, 65, 64, 65, 67, 65, 64, 62],
         "tenor": [60, 62, 60, 59, 57, 59, 60, 62],
         "bass": [48, 45, 43, 45, 48, 50, 48, 43]}


# --- inputs -----------------------------------------------------------------------------------------


def melody_notes(pitches=MELODY, beats: float = 1.0) -> list[dict]:
    return [{"pitch": p, "start_beat": i * beats, "duration_beats": beats} for i, p in enumerate(pitches)]


def piece_notes(bars: int = 4) -> list[dict]:
    """The first ``bars`` bars of :data:`PIECE` as a JSON note list, each note with its track."""
    return [{"pitch": p, "start_beat": 2.0 * i, "duration_beats": 2.0, "track": voice}
            for voice, line in PIECE.items() for i, p in enumerate(line[: 2 * bars])]


def midi_file(tracks: dict[str, list[dict]], qpm: float = 100.0,
              time_signature: tuple[int, int] | None = None) -> bytes:
    """A MIDI file with one instrument per entry (JSON-style notes in beats)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    if time_signature:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    beat_s = 60.0 / qpm
    for name, notes in tracks.items():
        inst = pretty_midi.Instrument(program=0, name=name)
        for n in notes:
            start = n["start_beat"] * beat_s
            inst.notes.append(pretty_midi.Note(velocity=90, pitch=n["pitch"], start=start,
                                               end=start + n["duration_beats"] * beat_s))
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def post_form(http, path: str, fields: dict, file: bytes | None = None, timeout: float = 120):
    """A ``multipart/form-data`` POST (``file`` as the MIDI upload): (status, headers, body)."""
    boundary = f"musicgan-{uuid.uuid4().hex}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="melody.mid"\r\n'
                     "Content-Type: audio/midi\r\n\r\n".encode() + file + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(http.base + path, data=b"".join(parts), method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def send(http, call: tuple):
    """``("json", path, body)`` or ``("form", path, fields, file)`` -> (status, headers, body)."""
    if call[0] == "form":
        return post_form(http, *call[1:])
    return http.call("POST", call[1], call[2], timeout=120)


def ok(http, call: tuple):
    status, headers, body = send(http, call)
    assert status == 200, (call[1], status, body[:400])
    return {k.lower(): v for k, v in headers.items()}, body


def answer(http, call: tuple) -> tuple[dict, dict]:
    headers, body = ok(http, call)
    return headers, json.loads(body)


def detail(body: bytes) -> str:
    return json.dumps(json.loads(body)["detail"])


# --- reading answers ------------------------------------------------------------------------------------


def cells_of_notes(notes: list[dict], track: str | None = None) -> dict[tuple[str, int], int]:
    """Input notes (beats, with or without a track) -> {(voice, step): pitch}."""
    out = {}
    for n in notes:
        voice = n.get("track", track)
        s0 = round(n["start_beat"] * STEPS_PER_BEAT)
        for s in range(s0, s0 + round(n["duration_beats"] * STEPS_PER_BEAT)):
            out[(voice, s)] = n["pitch"]
    return out


def cells_of_roll(doc: dict, sample: int = 0) -> dict[tuple[str, int], int]:
    """An answer's JSON pianoroll -> {(voice, step): pitch}; each voice sounds one pitch at a time."""
    out = {}
    for voice, track in zip(doc["tracks"], doc["samples"][sample]["pianoroll"]):
        for s, pitches in enumerate(track):
            assert len(pitches) <= 1, f"{voice} step {s} sounds {pitches}: voices are monophonic"
            if pitches:
                out[(voice, s)] = pitches[0]
    return out


def note_key(n: dict) -> tuple:
    return n["track"], n["pitch"], n["start_step"], n["end_step"]


def input_note_keys(notes: list[dict], track: str | None = None) -> list[tuple]:
    return sorted((n.get("track", track), n["pitch"], round(n["start_beat"] * STEPS_PER_BEAT),
                   round((n["start_beat"] + n["duration_beats"]) * STEPS_PER_BEAT)) for n in notes)


def model_roll(doc: dict, sample: int) -> np.ndarray:
    """The JSON pianoroll back as a bool roll ``[tracks, steps, pitches]`` in the model's key (the
    answer is in the user's: the input was moved by ``transpose_semitones``)."""
    shift = doc.get("transpose_semitones", 0)
    tracks = doc["samples"][sample]["pianoroll"]
    roll = np.zeros((len(tracks), len(tracks[0]), N_PITCHES), bool)
    for t, track in enumerate(tracks):
        for s, pitches in enumerate(track):
            for p in pitches:
                roll[t, s, p + shift - PITCH_LOW] = True
    return roll


def max_overlap_offline(roll: np.ndarray, train: np.ndarray) -> float:
    """The ``copies`` metric's measure by plain matrix product: the largest shared / max(cells of either)
    over the sample's phrase-long windows one bar apart and every training phrase."""
    t, s, p = train.shape[1:]
    if roll.shape[1] < s:
        roll = np.concatenate([roll, np.zeros((t, s - roll.shape[1], p), bool)], 1)
    windows = np.stack([roll[:, a: a + s] for a in range(0, roll.shape[1] - s + 1, STEPS_PER_BAR)])
    w = windows.reshape(len(windows), -1).astype(np.float32)
    x = train.reshape(len(train), -1).astype(np.float32)
    shared = w @ x.T
    denom = np.maximum(np.maximum(w.sum(1)[:, None], x.sum(1)[None, :]), 1)
    return float((shared / denom).max())


# --- the calls ------------------------------------------------------------------------------------------


def harmonize_json(fmt="json", seed=7, n=1, **more):
    return ("json", "/v1/harmonize", {"melody": melody_notes(), "seed": seed, "n_samples": n, "format": fmt, **more})


def harmonize_example(example_id, fmt="json", seed=7, n=1, **more):
    return ("json", "/v1/harmonize", {"example": example_id, "seed": seed, "n_samples": n, "format": fmt, **more})


def harmonize_upload(fmt="json", seed=7, n=1, **more):
    midi = midi_file({"melody": melody_notes()})
    return ("form", "/v1/harmonize", {"seed": seed, "n_samples": n, "format": fmt, **more}, midi)


def continue_json(fmt="json", seed=7, n=1, prompt_bars=2, n_bars=2, **more):
    return ("json", "/v1/continue", {"notes": piece_notes(prompt_bars), "n_bars": n_bars, "seed": seed,
                                     "n_samples": n, "format": fmt, **more})


def inpaint_json(fmt="json", seed=7, n=1, bars=(2, 3), voices=("alto", "tenor"), **more):
    return ("json", "/v1/inpaint", {"notes": piece_notes(4), "bars": list(bars), "voices": list(voices),
                                    "seed": seed, "n_samples": n, "format": fmt, **more})


def generate(fmt="json", seed=7, n=1, n_bars=6, **more):
    return ("json", "/v1/generate", {"n_bars": n_bars, "seed": seed, "n_samples": n, "format": fmt, **more})


@pytest.fixture(scope="module")
def info(served_masked):
    return served_masked.json("/v1/model")


@pytest.fixture(scope="module")
def example_id(info):
    assert info["examples"], "the masked test model ships no example melodies"
    return info["examples"][0]["id"]


@pytest.fixture(scope="module")
def data(bach_data):
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest

    return ckpt.data_info(load_manifest(bach_data.out))


# --- the model ------------------------------------------------------------------------------------------


def test_model_lists_tasks_voices_examples_and_the_index(info, bach_data):
    from musicgan.data.shards import load_manifest

    assert info["tasks"] == ["generate", "harmonize", "continue", "inpaint"]
    assert info["masked"] is True and info["hop_bars"] == 2 and info["phrase_bars"] == 4
    assert info["voices"] == VOICES
    assert info["max_input_bars"] == 64 and info["max_upload_bytes"] == 262144
    assert info["examples"], "no example melodies"
    for ex in info["examples"]:
        assert ex["id"] and ex["voice"] == "soprano" and ex["n_bars"] > 0 and ex["notes"], ex["id"]
        assert all({"pitch", "start_beat", "duration_beats"} <= set(n) for n in ex["notes"]), ex["id"]
    train = load_manifest(bach_data.out)["counts"]["train_examples"]
    assert train > 0 and info["originality"] == {"index_phrases": train, "copy_threshold": 0.9}


# --- formats and determinism -------------------------------------------------------------------------


def test_every_route_in_every_format_same_seed_same_bytes(served_masked, example_id):
    cases = {"harmonize notes": lambda f: harmonize_json(f, n=2),
             "harmonize example": lambda f: harmonize_example(example_id, f, n=2),
             "harmonize upload": lambda f: harmonize_upload(f, n=2),
             "continue": lambda f: continue_json(f, n=2),
             "inpaint": lambda f: inpaint_json(f, n=2),
             "generate 6 bars": lambda f: generate(f, n=2, n_bars=6),
             "generate 10 bars": lambda f: generate(f, n=2, n_bars=10)}
    bars = {"harmonize example": 8, "continue": 4, "generate 6 bars": 6, "generate 10 bars": 10}
    for case, make in cases.items():
        for fmt, (ctype, magic) in MAGIC.items():
            headers, body = ok(served_masked, make(fmt))
            what = f"{case}, {fmt}"
            assert headers["content-type"] == ctype and body.startswith(magic), what
            assert headers["x-musicgan-seed"] == "7" and headers["x-musicgan-model"], what
            assert len(headers["x-musicgan-max-overlap"].split(",")) == 2, (what, headers)
            assert headers["x-musicgan-redraws"].count(",") == 1, (what, headers)
            if not case.startswith("generate"):
                assert headers["x-musicgan-transpose"] == "0", what
            assert ok(served_masked, make(fmt))[1] == body, f"{what}: same seed, different bytes"
            if fmt == "json":
                doc = json.loads(body)
                task = case.split()[0]
                n_bars = bars.get(case, 4)
                assert doc["task"] == task and doc["n_bars"] == n_bars and len(doc["samples"]) == 2, what
                assert doc["steps_per_bar"] == STEPS_PER_BAR and doc["tracks"] == VOICES, what
                lengths = {len(track) for s in doc["samples"] for track in s["pianoroll"]}
                assert lengths == {n_bars * STEPS_PER_BAR}, (what, lengths)
                for s in doc["samples"]:
                    assert s["originality"]["copy_threshold"] == 0.9 and s["originality"]["redraws"] == 0, what
            if fmt == "zip":
                names = zipfile.ZipFile(io.BytesIO(body)).namelist()
                assert names == ["sample_000.mid", "sample_001.mid", "pianoroll.png", "samples.json"], (what, names)
                z = zipfile.ZipFile(io.BytesIO(body))
                assert z.read("sample_000.mid").startswith(b"MThd") and z.read("pianoroll.png").startswith(b"\x89PNG")
                assert len(json.loads(z.read("samples.json"))["samples"]) == 2, what
            if fmt == "midi":
                import pretty_midi

                pm = pretty_midi.PrettyMIDI(io.BytesIO(body))
                assert {i.name for i in pm.instruments} <= set(VOICES) and pm.instruments, what
    # another seed, other music (generated voices: the given ones stay)
    _, a = answer(served_masked, generate("json", seed=7, n_bars=6, temperature=1.0))
    _, b = answer(served_masked, generate("json", seed=8, n_bars=6, temperature=1.0))
    assert a["samples"][0]["pianoroll"] != b["samples"][0]["pianoroll"]


def test_generate_takes_multiples_of_the_hop_only(served_masked):
    status, _, body = send(served_masked, generate("json", n_bars=5))
    assert status == 422 and "multiple of 2" in detail(body), body[:300]


# --- batch invariance --------------------------------------------------------------------------------


def test_routes_mixed_in_one_burst_answer_as_alone_and_share_forwards(served_masked):
    from musicgan.assist.fill import count_windows

    calls = []
    for seed in (21, 22):
        calls += [harmonize_json("midi", seed=seed, avoid_copies=False, melody=melody_notes(MELODY * 2)),
                  inpaint_json("midi", seed=seed, avoid_copies=False),
                  continue_json("midi", seed=seed, n_bars=6, avoid_copies=False),
                  generate("midi", seed=seed, n_bars=10, avoid_copies=False),
                  generate("json", seed=seed, n_bars=4, avoid_copies=False)]
    # windows (= requests into the batched forward) each call sends, from the known cells of its job
    def known(steps: int, given) -> np.ndarray:
        k = np.zeros((4, steps), bool)
        given(k)
        return k

    def region(k):
        k[:] = True
        k[1:3, 16:48] = False

    def prompt(k):
        k[:, :32] = True

    def melody(k):
        k[0] = True

    jobs = (known(128, melody), known(64, region), known(128, prompt), known(160, lambda k: None))
    windows_each = [count_windows(k, STEPS_PER_BAR, 4) for k in jobs] + [1]  # + one plain phrase
    assert windows_each == [3, 1, 3, 4, 1]
    windows = 2 * sum(windows_each)
    alone = [ok(served_masked, c)[1] for c in calls]
    before = served_masked.json("/healthz")
    start = threading.Barrier(len(calls))

    def one(c):
        start.wait()
        return ok(served_masked, c)[1]

    with ThreadPoolExecutor(len(calls)) as pool:
        together = list(pool.map(one, calls))
    after = served_masked.json("/healthz")
    for c, a, t in zip(calls, alone, together):
        assert a == t, f"{c[1]} seed {c[2]['seed']}: different bytes in a batch than alone"
    forwards = after["forwards"] - before["forwards"]
    assert after["served"] - before["served"] == len(calls)
    assert forwards < windows, f"{forwards} forwards for {windows} windows: no window shared a forward"


# --- known notes unchanged ---------------------------------------------------------------------------


def test_harmonize_keeps_the_melody_and_flags_it_given(served_masked, example_id, info):
    example = next(e for e in info["examples"] if e["id"] == example_id)
    for call, melody in [(harmonize_json(n=2), melody_notes()), (harmonize_upload(n=2), melody_notes()),
                         (harmonize_example(example_id, n=2), example["notes"])]:
        headers, doc = answer(served_masked, call)
        if melody is not example["notes"]:  # (a held-out melody may lie outside the training soprano's range)
            assert doc["transpose_semitones"] == 0 and headers["x-musicgan-transpose"] == "0"
        for i, sample in enumerate(doc["samples"]):
            notes = sample["notes"]
            soprano = [note_key(n) for n in notes if n["track"] == "soprano"]
            assert sorted(soprano) == input_note_keys(melody, "soprano"), f"{call[1]} sample {i}: melody changed"
            assert all(n["given"] is (n["track"] == "soprano") for n in notes), \
                f"{call[1]} sample {i}: given flags {[(n['track'], n['given']) for n in notes]}"
            assert any(n["track"] != "soprano" for n in notes), f"sample {i}: no harmony written"
            cells = cells_of_roll(doc, i)
            assert {k: v for k, v in cells.items() if k[0] == "soprano"} == cells_of_notes(melody, "soprano")


def test_inpaint_keeps_every_note_outside_the_region(served_masked):
    given = piece_notes(4)
    for bars, voices in [((2, 3), ("alto", "tenor")), ((4, 4), ("soprano", "alto", "tenor", "bass"))]:
        region = range((bars[0] - 1) * STEPS_PER_BAR, bars[1] * STEPS_PER_BAR)
        headers, doc = answer(served_masked, inpaint_json(n=2, bars=bars, voices=voices, temperature=1.0))
        assert doc["task"] == "inpaint" and doc["n_bars"] == 4
        inside = lambda voice, s: voice in voices and s in region  # noqa: E731
        want = {k: v for k, v in cells_of_notes(given).items() if not inside(*k)}
        for i, sample in enumerate(doc["samples"]):
            cells = cells_of_roll(doc, i)
            got = {k: v for k, v in cells.items() if not inside(*k)}
            assert got == want, f"bars {bars} voices {voices}, sample {i}: cells outside the region changed"
            # notes are cut where given cells meet written ones: each lies wholly inside or outside the region
            outside_notes = []
            for n in sample["notes"]:
                steps = set(range(n["start_step"], n["end_step"]))
                if n["track"] in voices and steps & set(region):
                    assert steps <= set(region) and not n["given"], (f"sample {i}: a note crosses the region's edge "
                                                                     f"or is flagged given inside it", n)
                else:
                    assert n["given"], n
                    outside_notes.append(note_key(n))
            assert sorted(outside_notes) == sorted(
                k for k in input_note_keys(given) if not (k[0] in voices and set(range(k[2], k[3])) & set(region))), \
                f"bars {bars} voices {voices}, sample {i}: the notes outside the region are not the input's"


def test_continue_keeps_the_prompt_and_writes_the_new_bars(served_masked):
    prompt = piece_notes(2)
    headers, doc = answer(served_masked, continue_json(n=2, prompt_bars=2, n_bars=2, temperature=1.0))
    assert doc["task"] == "continue" and doc["n_bars"] == 4
    end = 2 * STEPS_PER_BAR
    for i, sample in enumerate(doc["samples"]):
        cells = cells_of_roll(doc, i)
        assert {k: v for k, v in cells.items() if k[1] < end} == cells_of_notes(prompt), f"sample {i}: prompt changed"
        assert any(k[1] >= end for k in cells), f"sample {i}: nothing written after the prompt"
        for n in sample["notes"]:
            assert n["end_step"] <= end or n["start_step"] >= end, (f"sample {i}: a note crosses the prompt's end", n)
            assert n["given"] is (n["end_step"] <= end), n
        assert sorted(note_key(n) for n in sample["notes"] if n["given"]) == input_note_keys(prompt), i


def test_a_melody_far_above_the_soprano_comes_back_in_its_own_key(served_masked, data):
    from musicgan.families.pianoroll import voice_ranges

    low, high = voice_ranges(data)[0]
    high_melody = [p + 24 for p in MELODY]  # two octaves up: G6..D7
    shift = high - max(high_melody)  # the smallest move into the soprano's range: down to its top
    assert shift < 0 and min(high_melody) + shift >= low
    for call in [harmonize_json(melody=melody_notes(high_melody)),
                 ("form", "/v1/harmonize", {"seed": 7, "format": "json"}, midi_file({"m": melody_notes(high_melody)}))]:
        headers, doc = answer(served_masked, call)
        assert headers["x-musicgan-transpose"] == str(shift) and doc["transpose_semitones"] == shift, \
            (headers.get("x-musicgan-transpose"), shift)
        soprano = [note_key(n) for n in doc["samples"][0]["notes"] if n["track"] == "soprano"]
        assert sorted(soprano) == input_note_keys(melody_notes(high_melody), "soprano")
        # the other voices moved back with it: all of them sound in the same register around the melody
        others = [n["pitch"] for n in doc["samples"][0]["notes"] if n["track"] != "soprano"]
        assert others and all(PITCH_LOW - shift <= p < PITCH_LOW + N_PITCHES - shift for p in others)
        _, midi = ok(served_masked, call[:2] + ({**call[2], "format": "midi"},) + call[3:])
        import pretty_midi

        pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
        top = next(i for i in pm.instruments if i.name == "soprano")
        assert [n.pitch for n in sorted(top.notes, key=lambda n: n.start)] == high_melody


def test_rests_in_a_melody_stay_rests_and_a_short_one_fills_its_last_bar(served_masked):
    melody = [n for i, n in enumerate(melody_notes()) if i % 4 != 3][:-2]  # a rest each bar; ends in bar 4
    headers, doc = answer(served_masked, harmonize_json(melody=melody, n=2))
    assert doc["n_bars"] == 4
    for i in range(2):
        soprano = {k: v for k, v in cells_of_roll(doc, i).items() if k[0] == "soprano"}
        assert soprano == cells_of_notes(melody, "soprano"), f"sample {i}: the soprano sounds in the melody's rests"


def test_inpaint_without_voices_rewrites_every_voice_in_the_bars(served_masked):
    call = ("json", "/v1/inpaint", {"notes": piece_notes(4), "bars": [3, 3], "seed": 6, "format": "json",
                                    "temperature": 1.0})
    _, doc = answer(served_masked, call)
    outside = lambda k: not 32 <= k[1] < 48  # noqa: E731
    assert {k: v for k, v in cells_of_roll(doc).items() if outside(k)} == \
        {k: v for k, v in cells_of_notes(piece_notes(4)).items() if outside(k)}
    assert not any(n["given"] for n in doc["samples"][0]["notes"] if 32 <= n["start_step"] and n["end_step"] <= 48)
    # the same region asked for by naming all four voices is the same request
    assert ok(served_masked, ("json", call[1], {**call[2], "voices": VOICES}))[1] == ok(served_masked, call)[1]


def test_the_png_draws_given_notes_in_near_black_and_downloads_are_named(served_masked):
    from PIL import Image

    def near_black(png: bytes) -> int:
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
        return int((pixels == 0x22).all(1).sum())

    # a melody in #222222 covers thousands of pixels; with nothing given, none (the caption's anti-aliasing
    # may hit the exact grey now and then)
    assert near_black(ok(served_masked, harmonize_json("png", n=2))[1]) > 1000
    assert near_black(ok(served_masked, generate("png", n=2, n_bars=4))[1]) < 50
    for call, name in [(harmonize_json("midi"), "musicgan-harmonize-7.mid"),
                       (inpaint_json("zip"), "musicgan-inpaint-7.zip"),
                       (continue_json("wav"), "musicgan-continue-7.wav")]:
        headers, _ = ok(served_masked, call)
        assert headers["content-disposition"] == f'attachment; filename="{name}"', headers


def test_an_upload_and_the_same_notes_as_json_give_the_same_answer(served_masked):
    """A form's options are strings, its lists "2,3" or "2:3"; the music read from MIDI equals the note list."""
    piece_midi = midi_file({v: [n for n in piece_notes(4) if n["track"] == v] for v in VOICES})
    prompt_midi = midi_file({v: [n for n in piece_notes(2) if n["track"] == v] for v in VOICES})
    form = {"seed": "9", "n_samples": "2", "format": "json", "tempo_qpm": "90", "temperature": "1.0"}
    pairs = [
        (("form", "/v1/harmonize", form, midi_file({"melody": melody_notes()})),
         harmonize_json(seed=9, n=2, temperature=1.0)),
        (("form", "/v1/inpaint", {**form, "bars": "2:3", "voices": "alto, tenor"}, piece_midi),
         inpaint_json(seed=9, n=2, bars=(2, 3), voices=("alto", "tenor"), temperature=1.0)),
        (("form", "/v1/continue", {**form, "n_bars": "2"}, prompt_midi),
         continue_json(seed=9, n=2, prompt_bars=2, n_bars=2, temperature=1.0)),
    ]
    for upload, notes in pairs:
        assert ok(served_masked, upload)[1] == ok(served_masked, notes)[1], f"{upload[1]}: upload != notes"
    # without tempo_qpm an upload plays at its file's tempo (100 here), JSON notes at 90
    _, doc = answer(served_masked, ("form", "/v1/harmonize", {"seed": "9", "format": "json"},
                                    midi_file({"melody": melody_notes()}, qpm=100.0)))
    assert doc["tempo_qpm"] == 100.0
    assert answer(served_masked, harmonize_json(seed=9))[1]["tempo_qpm"] == 90.0


def test_an_upload_chooses_its_melody_track_and_chords_keep_their_top_note(served_masked):
    tracks = {"bass line": melody_notes([p - 24 for p in MELODY]), "tune": melody_notes()}
    for track in ("1", "tune", "TUNE"):
        _, doc = answer(served_masked, ("form", "/v1/harmonize", {"seed": "1", "format": "json", "track": track},
                                        midi_file(tracks)))
        soprano = [note_key(n) for n in doc["samples"][0]["notes"] if n["track"] == "soprano"]
        assert sorted(soprano) == input_note_keys(melody_notes(), "soprano"), track
    status, _, body = post_form(served_masked, "/v1/harmonize", {"track": "2"}, midi_file(tracks))
    assert status == 422 and "no track 2" in detail(body) and "'tune'" in detail(body), body[:300]
    chords = melody_notes() + [{**n, "pitch": n["pitch"] - 7} for n in melody_notes()]
    headers, doc = answer(served_masked, harmonize_json(melody=chords))
    assert "chords" in headers.get("x-musicgan-warnings", ""), headers
    soprano = [note_key(n) for n in doc["samples"][0]["notes"] if n["track"] == "soprano"]
    assert sorted(soprano) == input_note_keys(melody_notes(), "soprano")


def test_a_bass_line_is_harmonized_above_it(served_masked, info):
    line = melody_notes(PIECE["bass"], 2.0)
    _, doc = answer(served_masked, harmonize_json(melody=line, voice="bass", n=2))
    for sample in doc["samples"]:
        assert sorted(note_key(n) for n in sample["notes"] if n["track"] == "bass") == input_note_keys(line, "bass")
        assert all(n["given"] is (n["track"] == "bass") for n in sample["notes"])
    # an example melody (a soprano line) as the bass: moved down into the bass's range, answered in its own key
    example = info["examples"][0]
    headers, doc = answer(served_masked, harmonize_example(example["id"], voice="bass"))
    assert int(headers["x-musicgan-transpose"]) == doc["transpose_semitones"] < 0
    assert sorted(note_key(n) for n in doc["samples"][0]["notes"] if n["track"] == "bass") == \
        input_note_keys(example["notes"], "bass")


def test_a_prompt_without_some_voices_gets_them_written_from_the_start(served_masked):
    prompt = [n for n in piece_notes(2) if n["track"] in ("soprano", "bass")]
    _, doc = answer(served_masked, ("json", "/v1/continue", {"notes": prompt, "n_bars": 2, "seed": 4,
                                                             "format": "json", "temperature": 1.0}))
    cells = cells_of_roll(doc)
    assert {k: v for k, v in cells.items() if k[0] in ("soprano", "bass") and k[1] < 32} == cells_of_notes(prompt)
    for n in doc["samples"][0]["notes"]:
        assert n["given"] is (n["track"] in ("soprano", "bass") and n["end_step"] <= 32), n


def test_a_piece_above_the_models_range_is_inpainted_in_its_own_key(served_masked):
    high = [{**n, "pitch": n["pitch"] + 12} for n in piece_notes(4)]  # soprano up to E6: above the model's B5
    shift = (PITCH_LOW + N_PITCHES - 1) - max(n["pitch"] for n in high)
    assert shift < 0
    call = ("json", "/v1/inpaint", {"notes": high, "bars": [2, 3], "voices": ["alto"], "seed": 2, "format": "json"})
    headers, doc = answer(served_masked, call)
    assert headers["x-musicgan-transpose"] == str(shift) and doc["transpose_semitones"] == shift
    outside = lambda k: not (k[0] == "alto" and 16 <= k[1] < 48)  # noqa: E731
    assert {k: v for k, v in cells_of_roll(doc).items() if outside(k)} == \
        {k: v for k, v in cells_of_notes(high).items() if outside(k)}


def test_without_a_seed_the_server_picks_one_and_says_which(served_masked):
    call = ("json", "/v1/harmonize", {"melody": melody_notes(), "format": "json", "temperature": 1.0})
    headers, body = ok(served_masked, call)
    seed = int(headers["x-musicgan-seed"])
    assert ok(served_masked, ("json", call[1], {**call[2], "seed": seed}))[1] == body


# --- bad input ---------------------------------------------------------------------------------------


def test_every_bad_upload_gets_its_status_and_message(served_masked):
    import pretty_midi

    empty = io.BytesIO()
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(program=0, name="melody"))
    pm.write(empty)
    long_melody = [{"pitch": 67 + (i % 2) * 2, "start_beat": 4.0 * i, "duration_beats": 4.0} for i in range(65)]
    wide = [{"pitch": 40, "start_beat": 0, "duration_beats": 2}, {"pitch": 90, "start_beat": 2, "duration_beats": 2}]
    form = {"seed": "1", "format": "json"}
    cases = [
        ("not MIDI", "/v1/harmonize", b"this is not a MIDI file at all", 422, "not a readable MIDI file"),
        ("no notes", "/v1/harmonize", empty.getvalue(), 422, "has no notes"),
        ("too long", "/v1/harmonize", midi_file({"m": long_melody}), 422, "65 bars long; at most 64"),
        ("too wide", "/v1/harmonize", midi_file({"m": wide}), 422, "wider than the voice range"),
        ("3/4", "/v1/harmonize", midi_file({"m": melody_notes()}, time_signature=(3, 4)), 422,
         "time signature 3/4"),
        ("continue, not MIDI", "/v1/continue", b"MThd but no more", 422, "not a readable MIDI file"),
        ("inpaint, 3/4", "/v1/inpaint", midi_file({"s": melody_notes()}, time_signature=(3, 4)), 422,
         "time signature 3/4"),
        ("over 256 KiB", "/v1/harmonize", b"MThd" + bytes(300 * 1024), 413, "262144 bytes"),
    ]
    fields = {"/v1/harmonize": form, "/v1/continue": {**form, "n_bars": "2"}, "/v1/inpaint": {**form, "bars": "1,2"}}
    for what, path, file, status, message in cases:
        got, _, body = post_form(served_masked, path, fields[path], file)
        assert got == status and message in body.decode(), (what, got, body[:300])
    got, _, body = post_form(served_masked, "/v1/harmonize", form, None)  # a form without its file
    assert got == 422 and "'file'" in detail(body), body[:300]
    got, _, body = post_form(served_masked, "/v1/inpaint", {**form, "bars": "3,9"}, midi_file(
        {v: [n for n in piece_notes(4) if n["track"] == v] for v in VOICES}))
    assert got == 422 and "this piece has 4 bars" in detail(body), body[:300]
    assert "supported: 4/4 and 2/2" in post_form(served_masked, "/v1/harmonize", form, cases[4][2])[2].decode()
    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi_file({"m": melody_notes()})))
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0), pretty_midi.TimeSignature(3, 4, 4.8)]
    changed = io.BytesIO()
    pm.write(changed)  # 4/4, then 3/4 from bar 3 (two bars of 4 beats at 100 qpm: 4.8 s)
    got, _, body = post_form(served_masked, "/v1/harmonize", form, changed.getvalue())
    assert got == 422 and "time signature 3/4 at bar 3 (quarter note 8 from the start)" in detail(body), body[:300]
    alla_breve = midi_file({"m": melody_notes()}, time_signature=(2, 2))  # two half-note beats: a 4/4 bar
    assert post_form(served_masked, "/v1/harmonize", form, alla_breve)[0] == 200
    midi = midi_file({"m": melody_notes()})
    for fields, message in [({**form, "colour": "red"}, "colour"),
                            ({**form, "melody": "67,69"}, "send note lists as JSON"),
                            ({**form, "n_samples": "many"}, "n_samples")]:
        got, _, body = post_form(served_masked, "/v1/harmonize", fields, midi)
        assert got == 422 and message in detail(body), (fields, got, body[:300])
    req = urllib.request.Request(served_masked.base + "/v1/harmonize", data=midi, method="POST",
                                 headers={"Content-Type": "audio/midi"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 415 and "multipart/form-data" in detail(refused.value.read())
    got, _, body = served_masked.call("POST", "/v1/harmonize", raw=midi)  # raw MIDI sent as if JSON
    assert got == 422 and "not valid JSON" in detail(body), body[:300]


@pytest.mark.parametrize("call, message", [
    (("json", "/v1/harmonize", {"example": "bwv9999.9"}), "is not one of this model's examples"),
    (("json", "/v1/harmonize", {"melody": melody_notes(), "voice": "tenor"}), "soprano"),
    (("json", "/v1/harmonize", {"melody": melody_notes(), "example": "bwv1.6"}), "give the melody one way"),
    (("json", "/v1/harmonize", {}), "give the melody one way"),
    (("json", "/v1/harmonize", {"melody": []}), "melody: give at least one note"),
    (("json", "/v1/inpaint", {"notes": piece_notes(4), "bars": [2, 3], "voices": ["descant"]}),
     "unknown voice 'descant' in voices;"),
    (("json", "/v1/inpaint", {"notes": piece_notes(4), "bars": [3, 9]}), "this piece has 4 bars"),
    (("json", "/v1/inpaint", {"notes": piece_notes(4), "bars": [0, 2]}), "bars count from 1"),
    (("json", "/v1/continue", {"notes": [{**n, "track": "descant"} for n in piece_notes(2)], "n_bars": 2}),
     "is not one of the model's voices"),
    (("json", "/v1/continue", {"notes": [{k: v for k, v in n.items() if k != "track"} for n in piece_notes(2)],
                               "n_bars": 2}), "needs a track"),
    (("json", "/v1/continue", {"notes": [{"pitch": 72 + i % 2 * 2, "start_beat": 4.0 * i, "duration_beats": 4.0,
                                          "track": "soprano"} for i in range(34)], "n_bars": 32}),
     "the prompt (34 bars) and n_bars 32 make 66 bars; the limit is 64"),
    (("json", "/v1/harmonize", {"melody": melody_notes([67, 69] * 128), "n_samples": 2, "format": "wav",
                                "tempo_qpm": 30.0}), "the limit is 300 s of audio a request"),
    (("json", "/v1/harmonize", {"melody": melody_notes(), "format": "mp3"}), "format"),
    (("json", "/v1/harmonize", {"melody": melody_notes(), "seed": "7"}), "seed"),
])
def test_bad_bodies_get_422_saying_what(served_masked, call, message):
    status, _, body = send(served_masked, call)
    assert status == 422 and message in detail(body), (status, body[:400])


def test_a_nan_in_the_json_body_is_a_422(served_masked):
    raw = b'{"melody": [{"pitch": 67, "start_beat": NaN, "duration_beats": 1}], "format": "json"}'
    status, _, body = served_masked.call("POST", "/v1/harmonize", raw=raw)
    assert status == 422 and "NaN" in detail(body) and "not valid JSON" in detail(body), body[:300]


def test_json_bodies_have_room_for_the_longest_note_list_and_a_limit(served_masked):
    """A JSON piece is read well past /v1/generate's 16 KiB; a note list past the schema's MAX_NOTES is the
    schema's 422 (the body limit leaves room for it); a body past the JSON limit is a 413."""
    from serving import assist
    from serving.schema import MAX_BODY_BYTES

    limit = assist.MAX_JSON_BYTES
    notes = [{"pitch": line[i % len(line)], "start_beat": 0.5 * i, "duration_beats": 0.5, "track": voice}
             for voice, line in PIECE.items() for i in range(32 * 8)]  # 32 bars of eighth notes
    body = {"notes": notes, "bars": [31, 32], "voices": ["alto"], "seed": 3, "format": "json"}
    assert len(json.dumps(body)) > MAX_BODY_BYTES
    headers, doc = answer(served_masked, ("json", "/v1/inpaint", body))
    assert doc["n_bars"] == 32 and {k: v for k, v in cells_of_roll(doc).items() if k[0] != "alto"} == \
        {k: v for k, v in cells_of_notes(notes).items() if k[0] != "alto"}
    too_many = {**body, "notes": [notes[1]] * (assist.MAX_NOTES + 1)}
    raw = json.dumps(too_many).encode()
    assert assist.MAX_UPLOAD_BYTES < len(raw) <= limit
    status, _, content = served_masked.call("POST", "/v1/inpaint", raw=raw)
    assert status == 422 and str(assist.MAX_NOTES) in detail(content), (status, content[:300])
    status, _, content = served_masked.call("POST", "/v1/inpaint", raw=json.dumps(body).encode() + b" " * limit)
    assert status == 413 and f"over {limit} bytes" in content.decode(), (status, content[:300])


def test_a_64_bar_melody_with_16_samples_is_over_the_cost_bound(served_masked):
    melody = melody_notes([67, 69, 71, 72] * 16, 4.0)  # 64 whole notes: 64 bars, 31 windows a sample
    status, _, body = send(served_masked, harmonize_json("midi", n=16, melody=melody))
    assert status == 422, body[:300]
    assert "496 phrases" in detail(body) and "the limit is 64 phrases" in detail(body), body[:300]
    status, _, body = send(served_masked, harmonize_json("midi", n=2, melody=melody))
    assert status == 200, (status, body[:300])  # 62 windows: within the bound


# --- originality -----------------------------------------------------------------------------------


def test_max_overlap_header_matches_an_offline_recomputation(served_masked, bach_data):
    from musicgan.data.shards import ShardReader

    train = ShardReader(bach_data.out, "train").arrays()["x"] > 0
    calls = [harmonize_json(n=2, melody=melody_notes(MELODY * 2)), generate(n=2, n_bars=6),
             continue_json(n=1), inpaint_json(n=1), generate(n=1, n_bars=4)]
    seen = []
    for call in calls:
        headers, doc = answer(served_masked, call)
        header = [float(v) for v in headers["x-musicgan-max-overlap"].split(",")]
        assert len(header) == len(doc["samples"]), call[1]
        for i, sample in enumerate(doc["samples"]):
            want = max_overlap_offline(model_roll(doc, i), train)
            seen.append(want)
            # the header has 3 decimals of the JSON's 4: within half a unit of each rounding
            assert abs(header[i] - want) <= 0.00055, (call[1], i, header[i], want)
            assert abs(sample["originality"]["max_overlap"] - want) <= 0.00005 + 1e-9, (call[1], i, want)
            assert sample["originality"]["copy"] is (want > 0.9)
    assert max(seen) > 0.05, f"every overlap is about 0 ({seen}): the comparison would show nothing"
