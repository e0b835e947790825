"""The served bodies (MIDI, WAV, PNG, JSON, zip) rendered straight from ``serving.render``: no Ray,
no Serve, no model; hand-placed notes in a two-phrase roll, so every count and time is known."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from musicgan.config import FeatureConfig, to_dict
from musicgan.render import feature_config
from serving.render import join_phrases, notes_of, render, render_audio
from serving.schema import AUDIO_GAP_S, GenerateRequest

FC = FeatureConfig()  # 4 tracks (SATB), 16 steps a bar, 4-bar phrases, pitches 36..83
DATA = {"feature_config": to_dict(FC), "steps_per_bar": FC.steps_per_bar, "pitch_low": FC.pitch_low,
        "track_names": FC.track_names, "bars": FC.bars, "labels": []}
MODEL = SimpleNamespace(name="bach", version="v1", data=DATA, family="pianoroll")
PHRASE_STEPS = FC.bars * FC.steps_per_bar  # 64
TEMPO_QPM = 120.0
STEP_S = 60.0 / TEMPO_QPM / (FC.steps_per_bar // 4)  # 0.125 s
# (track, MIDI pitch, start step, end step) in one 2-phrase sample; the note at 60-68 crosses the
# phrase boundary (64) and must stay one note, the bass note ends with the sample
NOTES = [(0, 72, 0, 8), (1, 64, 8, 16), (0, 74, 60, 68), (2, 55, 70, 80), (3, 40, 100, 128)]
N_SAMPLES, PHRASES = 2, 2


def sample_roll(transpose: int) -> np.ndarray:
    roll = np.zeros((len(FC.track_names), PHRASES * PHRASE_STEPS, FC.pitch_high - FC.pitch_low), bool)
    for t, pitch, s, e in NOTES:
        roll[t, s:e, pitch + transpose - FC.pitch_low] = True
    return roll


SAMPLES = np.stack([sample_roll(0), sample_roll(1)])  # [n, tracks, steps, pitches]
# what the generator returns: [n * phrases, tracks, phrase steps, pitches], sample by sample
ROLLS = SAMPLES.reshape(N_SAMPLES, 4, PHRASES, PHRASE_STEPS, -1).transpose(0, 2, 1, 3, 4).reshape(
    N_SAMPLES * PHRASES, 4, PHRASE_STEPS, -1)


def body(fmt: str) -> GenerateRequest:
    return GenerateRequest(format=fmt, n_samples=N_SAMPLES, n_bars=PHRASES * FC.bars, tempo_qpm=TEMPO_QPM, seed=7)


def midi_notes(pm: pretty_midi.PrettyMIDI) -> list[tuple]:
    return sorted((inst.name, n.pitch, round(n.start, 6), round(n.end, 6)) for inst in pm.instruments for n in inst.notes)


def expected_notes(offset_steps: int = 0, transpose: int = 0) -> list[tuple]:
    return sorted((FC.track_names[t], p + transpose, round((s + offset_steps) * STEP_S, 6),
                   round((e + offset_steps) * STEP_S, 6)) for t, p, s, e in NOTES)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_join_phrases_puts_each_samples_phrases_end_to_end():
    assert np.array_equal(join_phrases(ROLLS, N_SAMPLES, PHRASES), SAMPLES)


def test_midi_holds_every_note_and_the_samples_one_after_another_with_a_bar_of_rest():
    mid = render(join_phrases(ROLLS, N_SAMPLES, PHRASES), body("midi"), MODEL, seed=7)
    assert mid[:4] == b"MThd"
    pm = pretty_midi.PrettyMIDI(io.BytesIO(mid))
    assert sum(len(inst.notes) for inst in pm.instruments) == N_SAMPLES * len(NOTES)
    second = PHRASES * PHRASE_STEPS + FC.steps_per_bar  # the second sample starts after a bar of rest
    assert midi_notes(pm) == sorted(expected_notes() + expected_notes(second, transpose=1))
    assert render(SAMPLES, body("midi"), MODEL, seed=7) == mid  # same input, same bytes


def test_wav_is_16_khz_mono_and_as_long_as_the_music(monkeypatch):
    monkeypatch.setenv("MUSICGAN_SYNTH", "sine")  # the same synth on every machine (fluidsynth adds a reverb tail)
    wav = render(SAMPLES, body("wav"), MODEL, seed=7)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    info = sf.info(io.BytesIO(wav))
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
    end_s = (PHRASES * PHRASE_STEPS + FC.steps_per_bar + max(e for *_, e in NOTES)) * STEP_S  # 34 s
    # pretty_midi's sine synth renders one second past the last note's end
    assert info.frames == int(16_000 * (end_s + 1.0)), (info.frames, end_s)
    y, _ = sf.read(io.BytesIO(wav))
    assert np.abs(y[: int(16_000 * STEP_S * 8)]).max() > 0.1  # the first notes sound


def test_png_is_a_png_of_one_panel_per_sample():
    png = render(SAMPLES, body("png"), MODEL, seed=7)
    # pianoroll_png: 3.2 x 2.4 in a panel (+0.6 in for legend and caption) at 90 dpi, 2 panels in a row
    assert png_size(png) == (round(2 * 3.2 * 90), round((2.4 + 0.6) * 90))
    one = render(SAMPLES[:1], body("png"), MODEL, seed=7)
    assert png_size(one) == (round(3.2 * 90), round((2.4 + 0.6) * 90))


def test_json_lists_the_notes_and_the_sounding_pitches_of_each_step():
    doc = json.loads(render(SAMPLES, body("json"), MODEL, seed=7))
    assert doc["model"] == {"name": "bach", "version": "v1"} and doc["seed"] == 7 and doc["tempo_qpm"] == TEMPO_QPM
    assert doc["tracks"] == FC.track_names and doc["steps_per_bar"] == 16 and doc["pitch_low"] == 36
    assert len(doc["samples"]) == N_SAMPLES
    notes = doc["samples"][0]["notes"]
    assert notes == [{**n, "given": False} for n in notes_of(SAMPLES[0], DATA, TEMPO_QPM)]  # nothing was given
    assert sorted((n["track"], n["pitch"], n["start_step"], n["end_step"]) for n in notes) == sorted(
        (FC.track_names[t], p, s, e) for t, p, s, e in NOTES)
    crossing = next(n for n in notes if n["pitch"] == 74)
    assert (crossing["start_s"], crossing["end_s"]) == (60 * STEP_S, 68 * STEP_S)
    assert [n["pitch"] for n in doc["samples"][1]["notes"]] == [n["pitch"] + 1 for n in notes]
    roll = doc["samples"][0]["pianoroll"]  # tracks x steps, each step the MIDI pitches sounding
    assert len(roll) == 4 and len(roll[0]) == PHRASES * PHRASE_STEPS
    assert roll[0][0] == [72] and roll[0][8] == [] and roll[0][64] == [74] and roll[3][127] == [40]


def test_zip_holds_a_midi_per_sample_the_png_and_the_json_with_fixed_times():
    z = zipfile.ZipFile(io.BytesIO(render(SAMPLES, body("zip"), MODEL, seed=7)))
    assert z.namelist() == ["sample_000.mid", "sample_001.mid", "pianoroll.png", "samples.json"]
    assert {i.date_time for i in z.infolist()} == {(2020, 1, 1, 0, 0, 0)}  # same request, same bytes
    pm = pretty_midi.PrettyMIDI(io.BytesIO(z.read("sample_001.mid")))
    assert midi_notes(pm) == expected_notes(transpose=1)  # each sample alone, from time 0
    assert z.read("samples.json") == render(SAMPLES, body("json"), MODEL, seed=7)
    assert png_size(z.read("pianoroll.png"))[0] == round(2 * 3.2 * 90)


# --- spectrogram (audio) models -------------------------------------------------------------------


def audio_model():
    fc = FeatureConfig(kind="mel", clip_seconds=0.5, n_mels=80, pitch_low=60, pitch_high=62)
    data = {"feature_config": to_dict(fc), "pitches": [60, 61], "instruments": ["piano", "flute"]}
    return SimpleNamespace(name="notes", version="v2", data=data, family="spectrogram", fc=feature_config(data),
                           pitches=[60, 61], instruments=["piano", "flute"])


def test_audio_wav_is_the_clips_with_a_gap_between_and_the_rest_is_complete():
    model = audio_model()
    fc = model.fc
    frames = 1 + int(fc.clip_seconds * fc.sample_rate_hz) // fc.hop_length
    mels = np.random.default_rng(0).uniform(-80, -20, (3, 1, fc.n_mels, frames)).astype(np.float32)
    cond = (1, 0)  # pitch 61, piano
    info = sf.info(io.BytesIO(render_audio(mels, "wav", model, 7, cond)))
    clip, gap = round(fc.clip_seconds * fc.sample_rate_hz), round(AUDIO_GAP_S * fc.sample_rate_hz)
    assert (info.samplerate, info.channels, info.frames) == (fc.sample_rate_hz, 1, 3 * clip + 2 * gap)
    doc = json.loads(render_audio(mels, "json", model, 7, cond))
    assert (doc["pitch"], doc["pitch_name"], doc["instrument"], doc["family"]) == (61, "C#4", "piano", "spectrogram")
    assert len(doc["samples"]) == 3 and doc["n_mels"] == fc.n_mels and doc["frames"] == frames
    png = render_audio(mels, "png", model, 7, cond)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    z = zipfile.ZipFile(io.BytesIO(render_audio(mels, "zip", model, 7, cond)))
    assert z.namelist() == [f"sample_{k:03d}_piano_C#4.wav" for k in range(3)] + [
        "spectrogram.png", "samples.json", "mels.npy"]
    assert sf.info(io.BytesIO(z.read("sample_000_piano_C#4.wav"))).frames == clip
    assert np.array_equal(np.load(io.BytesIO(z.read("mels.npy"))), mels)


@pytest.mark.parametrize("modules", ["serving.render, serving.schema", "serving.http_edge, serving.model"])
def test_the_ray_free_modules_do_not_import_ray(modules):
    code = f"import sys, {modules}; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_notes_are_cut_where_given_cells_meet_generated_ones():
    """A given note and a generated note of the same pitch right after it are one run of cells in the roll;
    the note list keeps them apart, so the given note comes back exactly as it was given."""
    import numpy as np

    from serving.render import notes_of

    data = {"steps_per_bar": 16, "pitch_low": 36, "track_names": ["soprano", "alto"]}
    roll = np.zeros((2, 32, 48), bool)
    roll[0, 0:20, 10] = True  # given for steps 0-15, then the model held the same pitch to step 20
    roll[1, 4:8, 5] = True
    given = np.zeros((2, 32), bool)
    given[0, :16] = True
    given[1, :] = True
    notes = [(n["track"], n["pitch"], n["start_step"], n["end_step"], n["given"]) for n in notes_of(roll, data, 90, given)]
    assert notes == [("soprano", 46, 0, 16, True), ("soprano", 46, 16, 20, False), ("alto", 41, 4, 8, True)]
    # without given cells (plain /v1/generate), a run is one note
    assert [(n["start_step"], n["end_step"]) for n in notes_of(roll, data, 90)] == [(0, 20), (4, 8)]
