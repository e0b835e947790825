"""The spectrogram GAN through the same paths as the pianoroll GAN: Ray Train (``musicgan train``),
sample, evaluate, a Ray Tune search with the audio space, and promotion. Tiny presets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgan.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audio_run(notes_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("audio-run") / "run"
    # two Train workers: the spectrogram GAN (with its classifier heads) under DDP, as on a cluster
    code = main(["train", "--data", notes_data.out, "--run-dir", str(run), "--preset", "audio-tiny", "--workers", "2",
                 "--set", "train.batch_size_per_worker=8"])
    assert code == 0
    return run


def test_training_writes_audio_checkpoints_metrics_and_samples(audio_run):
    assert (audio_run / "checkpoint_000006" / "generator_ema.pt").exists()
    starts = [json.loads(line) for line in (audio_run / "events.jsonl").read_text().splitlines()]
    assert [s["world_size"] for s in starts] == [2]
    rows = list(csv.DictReader((audio_run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]
    last = rows[-1]
    for key in ("FMD", "FMD_untrained", "FMD_ratio", "diversity", "pitch_accuracy", "pitch_accuracy_real",
                "aux_real", "aux_fake"):
        assert last[key] not in ("", None), key
    # the training clips, through the same Griffin-Lim + pYIN path, are mostly heard at their pitch
    assert float(last["pitch_accuracy_real"]) >= 0.75
    wavs = sorted((audio_run / "samples" / "step_000006").glob("*.wav"))
    assert len(wavs) == 8
    y, sr = sf.read(wavs[0])
    assert sr == 16_000 and len(y) == 16_000 and np.abs(y).max() > 0
    assert (audio_run / "samples" / "step_000006" / "samples.png").stat().st_size > 5000
    assert (audio_run / "metrics.png").exists() and (audio_run / "classifier.png").exists()


def test_sample_writes_one_wav_per_instrument_at_the_asked_pitch(audio_run, tmp_path, capsys):
    assert main(["sample", "--model", str(audio_run), "--pitch", "62", "--instrument", "all", "--n", "2",
                 "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert names == ["sample_000_flute_D4.wav", "sample_001_flute_D4.wav", "sample_002_piano_D4.wav",
                     "sample_003_piano_D4.wav"]
    assert main(["sample", "--model", str(audio_run), "--pitch", "90", "--out", str(tmp_path / "x")]) == 2
    assert "pitch 90 is not one this model was trained on: 60..65" in capsys.readouterr().err


def test_evaluate_prints_the_audio_table(audio_run, notes_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(audio_run), "--data", notes_data.out, "--n", "24",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pitch accuracy" in text and "FMD / untrained" in text
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["family"] == "spectrogram" and 0 <= m["pitch_accuracy"] <= 1 and m["FMD_untrained"] > 0
    assert m["FMD_ratio"] == pytest.approx(m["FMD"] / m["FMD_untrained"])


def test_pianoroll_preset_on_audio_data_is_refused_before_ray(notes_data, tmp_path, capsys):
    assert main(["train", "--data", notes_data.out, "--run-dir", str(tmp_path / "r"), "--preset", "cpu-tiny"]) == 2
    assert "needs pianoroll; use --preset audio-cpu" in capsys.readouterr().err


def test_audio_search_promotes_a_generator_that_serves_notes(notes_data, tmp_path):
    from musicgan import registry
    from musicgan.audio_model import NoteRequest, generate_mels
    from musicgan.checkpoint import load_generator
    from tuning.search import SearchSpec, run_search

    spec = SearchSpec(data_dir=notes_data.out, space=str(ROOT / "tuning" / "spaces" / "audio.yaml"),
                      run_dir=str(tmp_path / "search"), trials=2, scheduler="none", preset="audio-tiny",
                      overrides=["train.total_steps=3"], seed=0)
    rows, best = run_search(spec, progress=False)
    assert len(rows) == 2 and all(r.status == "completed" and r.steps == 3 for r in rows), rows
    assert all(np.isfinite(r.fmd) and 0 <= r.pitch_accuracy <= 1 for r in rows)
    assert "pitch_accuracy" in (tmp_path / "search" / "results.csv").read_text().splitlines()[0]
    record = registry.promote(tmp_path / "search", str(tmp_path / "models"), "notes")
    assert record["config"]["model"]["family"] == "spectrogram"
    path, _ = registry.resolve(str(tmp_path / "models" / "notes" / "latest"))
    g, cfg, data, meta = load_generator(path)
    assert meta["step"] == 3 and data["instruments"] == ["flute", "piano"]
    assert generate_mels(g, [NoteRequest(2, seed=0, pitch=1, instrument=1)])[0].shape == (2, 1, 80, 63)
