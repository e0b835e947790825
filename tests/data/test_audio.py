"""Audio sources: a folder of audio files and the rendered chorales become log-mel shards."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from musicgan.config import FeatureConfig
from musicgan.data import shards as S
from musicgan.data.audio import audio_to_clips, decode_audio, log_mel, render_midi
from musicgan.data.build import build
from musicgan.data.pianoroll import BadInput


def tone(freq_hz: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_log_mel_puts_a_tone_in_the_right_band():
    fc = FeatureConfig(kind="mel", n_mels=64)
    import librosa

    mel = log_mel(tone(1000, 1.0, fc.sample_rate_hz), fc)
    assert mel.shape == (64, fc.sample_rate_hz // fc.hop_length + 1)
    centers = librosa.mel_frequencies(n_mels=64 + 2, fmax=fc.sample_rate_hz / 2)[1:-1]
    peak_band = int(mel.mean(axis=1).argmax())
    assert abs(centers[peak_band] - 1000) < 120


def test_clips_are_cut_and_silence_dropped():
    fc = FeatureConfig(kind="mel", clip_seconds=0.5)
    sr = fc.sample_rate_hz
    y = np.concatenate([tone(440, 1.0, sr), np.zeros(sr // 2, np.float32), tone(880, 0.7, sr)])
    mels, starts = audio_to_clips(y, fc)
    assert starts.tolist() == [0.0, 0.5, 1.5]  # the silent clip at 1.0 s is dropped, the 0.2 s tail too
    assert mels.shape[1:] == (fc.n_mels, fc.frames_per_clip)


def test_decode_rejects_garbage_and_resamples(tmp_path):
    with pytest.raises(BadInput, match="empty"):
        decode_audio(b"", "x.wav", 16000)
    with pytest.raises(BadInput, match="unreadable"):
        decode_audio(b"RIFF....WAVEfmt garbage", "x.wav", 16000)
    path = tmp_path / "a.wav"
    sf.write(path, tone(440, 1.0, 22050), 22050)
    y = decode_audio(path.read_bytes(), "a.wav", 16000)
    assert abs(len(y) - 16000) <= 1


@pytest.mark.ray
def test_audio_folder_builds_mel_shards(ray_instance, tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    sr = 22050
    for i, f in enumerate([220, 330, 440]):
        sf.write(src / f"tone{i}.wav", tone(f, 3.0, sr), sr)
    sf.write(src / "tone.flac", tone(550, 2.0, sr), sr, format="FLAC")
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00")
    (src / "short.ogg").write_bytes(b"")
    fc = FeatureConfig(kind="mel", clip_seconds=1.0, n_mels=32)
    result = build(str(src), str(tmp_path / "out"), fc, progress=False)
    m = result.manifest
    assert m["kind"] == "mel" and m["example_shape"] == [1, 32, fc.frames_per_clip]
    assert m["counts"]["files_ok"] == 4 and m["counts"]["examples"] == 3 * 3 + 2
    assert {s["file"] for s in m["skipped"]} == {"broken.wav", "short.ogg"}
    x = S.ShardReader(str(tmp_path / "out"), split=None).arrays()["x"]
    assert x.shape == (11, 1, 32, fc.frames_per_clip)
    assert x.max() > -20 and x.min() >= -100


@pytest.mark.ray
def test_bach_audio_renders_and_builds(ray_instance, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGAN_CACHE_DIR", str(tmp_path / "cache"))
    fc = FeatureConfig(kind="mel", clip_seconds=2.0)
    result = build("bach-audio", str(tmp_path / "out"), fc, limit=3, progress=False)
    m = result.manifest
    assert m["kind"] == "mel" and m["counts"]["files_ok"] == 3
    assert m["counts"]["examples"] >= 3 * 10  # each chorale lasts well over 20 s
    assert m["source"] == "bach-audio"


@pytest.mark.parametrize("backend", ["sine", "fluidsynth"])
def test_render_midi_makes_audible_audio(bach_midi, backend):
    import shutil

    from musicgan.data.audio import find_soundfont

    if backend == "fluidsynth" and not (shutil.which("fluidsynth") and find_soundfont()):
        pytest.skip("fluidsynth or a GM soundfont is not installed (make sysdeps installs them)")
    y = render_midi(bach_midi[0], 16000, backend=backend)
    assert len(y) > 16000 * 20
    rms = float(np.sqrt(np.mean(y**2)))
    assert 0.01 < rms < 1.0
