"""The embedded ``notes`` source and labelled audio folders: labels reach the shards, and are right."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgan.audio_metrics import track_pitch
from musicgan.config import FeatureConfig
from musicgan.data import notes
from musicgan.data.build import BuildError, build
from musicgan.data.shards import ShardReader


def test_notes_build_labels_every_clip(notes_data):
    m = notes_data.manifest
    assert m["kind"] == "mel" and m["pitches"] == [60, 61, 62, 63, 64, 65] and m["instruments"] == ["flute", "piano"]
    assert m["counts"]["examples"] == 24 and m["example_shape"] == [1, 80, 63]
    a = ShardReader(notes_data.out, split=None).arrays()
    # the file name says what was rendered: flute/flute-p063-v110.wav
    for src, pitch, inst in zip(a["source"], a["pitch"], a["instrument"]):
        name = Path(src).stem.split("-")
        assert int(name[1][1:]) == pitch and m["instruments"][inst] == name[0]
    assert sorted(set(zip(a["pitch"].tolist(), a["instrument"].tolist()))) == [(p, i) for p in range(60, 66) for i in (0, 1)]


def test_rendered_notes_have_the_labelled_pitch(notes_data):
    """The tracker that grades generated audio agrees with the labels on the rendered audio itself."""
    folder = Path(notes_data.manifest["source_folder"])
    rows = list(csv.DictReader((folder / notes.LABELS_FILE).open()))
    audio = np.stack([sf.read(folder / r["file"], dtype="float32")[0] for r in rows])
    assert audio.shape == (24, 16_000)  # exactly one clip each
    detected = track_pitch(audio, 16_000, 47, 79)
    assert np.abs(detected - [int(r["pitch"]) for r in rows]).max() < 0.5
    # piano and flute differ: their mean spectra are not the same shape
    flute = np.abs(np.fft.rfft(audio[[i for i, r in enumerate(rows) if r["instrument"] == "flute"]])).mean(0)
    piano = np.abs(np.fft.rfft(audio[[i for i, r in enumerate(rows) if r["instrument"] == "piano"]])).mean(0)
    assert np.corrcoef(flute, piano)[0, 1] < 0.98


def test_additive_fallback_sounds_at_the_pitch_and_differs_by_instrument():
    y = {name: notes.synth_additive(69, name, 100, 1.0, 16_000) for name in ("flute", "trumpet")}
    assert np.abs(track_pitch(np.stack(list(y.values())), 16_000, 50, 90) - 69).max() < 0.3
    # 1 s at 16 kHz: rfft bin k is k Hz. Second harmonic over fundamental: flute 0.2, trumpet 0.9
    ratio = {k: np.abs(np.fft.rfft(v))[875:885].max() / np.abs(np.fft.rfft(v))[435:445].max() for k, v in y.items()}
    assert ratio["flute"] == pytest.approx(0.2, abs=0.05) and ratio["trumpet"] == pytest.approx(0.9, abs=0.1)


def write_tone(path: Path, midi: int, seconds: float = 1.0, sr: int = 16_000) -> None:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t)).astype(np.float32), sr)


def test_audio_folder_with_labels_csv(ray_instance, tmp_path):
    src = tmp_path / "src"
    write_tone(src / "a.wav", 60, seconds=2.0)  # two clips, both labelled 60 / sine
    write_tone(src / "sub" / "b.wav", 67)
    write_tone(src / "stray.wav", 70)  # not in labels.csv: skipped with a reason
    (src / "labels.csv").write_text("file,pitch,instrument\na.wav,60,sine\nsub/b.wav,67,organ\n")
    fc = FeatureConfig(kind="mel", clip_seconds=1.0, n_mels=80)
    result = build(str(src), str(tmp_path / "out"), fc, progress=False)
    m = result.manifest
    assert m["pitches"] == [60, 67] and m["instruments"] == ["organ", "sine"]
    assert [s["file"] for s in m["skipped"]] == ["stray.wav"] and "labels.csv" in m["skipped"][0]["reason"]
    a = ShardReader(result.out, split=None).arrays()
    got = sorted(zip(a["source"].tolist(), a["pitch"].tolist(), a["instrument"].tolist()))
    assert got == [("a.wav", 60, 1), ("a.wav", 60, 1), ("sub/b.wav", 67, 0)]


@pytest.mark.parametrize("text, message", [
    ("name,pitch\nx.wav,60\n", "columns file,pitch,instrument"),
    ("file,pitch,instrument\nx.wav,sixty,sine\n", "line 2: pitch 'sixty'"),
    ("file,pitch,instrument\nx.wav,200,sine\n", "line 2: needs"),
])
def test_bad_labels_csv_is_a_clear_error(tmp_path, text, message):
    src = tmp_path / "src"
    write_tone(src / "x.wav", 60)
    (src / "labels.csv").write_text(text)
    with pytest.raises(BuildError, match=message):
        build(str(src), str(tmp_path / "out"), FeatureConfig(kind="mel", clip_seconds=1.0), progress=False)


def test_unknown_instrument_or_velocity_is_a_clear_error(tmp_path, capsys):
    from musicgan.cli import main

    assert main(["data", "build", "--source", "notes", "--out", str(tmp_path / "o"), "--instruments", "kazoo"]) == 2
    assert "unknown instrument(s) kazoo; choose from piano" in capsys.readouterr().err
    assert main(["data", "build", "--source", "notes", "--out", str(tmp_path / "o"), "--velocities", "0,300"]) == 2
    assert "velocities must be MIDI velocities 1..127" in capsys.readouterr().err
    assert main(["data", "build", "--source", "bach", "--out", str(tmp_path / "o"), "--instruments", "piano"]) == 2
    assert not (tmp_path / "o" / "manifest.json").exists()
