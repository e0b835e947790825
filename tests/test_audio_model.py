"""The spectrogram GAN without Ray: shapes, conditioning, the shared loop with the AC loss,
checkpoints, batch-invariant generation, and the Griffin-Lim inversion."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from musicgan import checkpoint as ckpt
from musicgan.audio_metrics import track_pitch
from musicgan.audio_model import (ConditionError, NoteRequest, condition_index, generate_mels, harmonic_templates,
                                  label_grid, normalize)
from musicgan.config import FeatureConfig, apply_overrides, to_dict
from musicgan.data.audio import log_mel, mel_to_audio
from musicgan.gan import make_gan, train
from musicgan.model import build_for_data
from musicgan.presets import load_preset

FC = FeatureConfig(kind="mel", clip_seconds=1.0, n_mels=80, track_names=["audio"])
DATA = {"kind": "mel", "feature_config": to_dict(FC), "feature_hash": "test", "example_shape": FC.example_shape(),
        "labels": ["notes"], "bars": 4, "steps_per_bar": 16, "pitch_low": 48, "track_names": ["audio"],
        "pitches": [60, 64, 67], "instruments": ["flute", "piano"], "db_mean": -50.0, "db_std": 25.0}


def tone_clip(midi: int, sr: int = 16_000) -> np.ndarray:
    t = np.arange(sr) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    return (0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))).astype(np.float32)


def models(preset="audio-tiny", seed=0):
    cfg = load_preset(preset)
    torch.manual_seed(seed)
    g, d = build_for_data(cfg.model, DATA)
    return cfg, g, d


def test_shapes_and_heads():
    cfg, g, d = models()
    z, empty = g.sample_latents(5)
    cond = torch.tensor([[0, 0], [1, 1], [2, 0], [0, 1], [2, 1]])
    x = g(z, empty, cond)
    assert x.shape == (5, 1, 80, 63)
    score, pitch_logits, instrument_logits = d(x, cond)
    assert score.shape == (5,) and pitch_logits.shape == (5, 3) and instrument_logits.shape == (5, 2)


def test_harmonic_template_marks_the_bands_of_each_harmonic():
    t = harmonic_templates([69], 80, 16_000, 1024)[0]
    centres = librosa.mel_frequencies(n_mels=82, fmax=8000)[1:-1]
    assert int(t.argmax()) == int(abs(centres - 440).argmin())  # the fundamental weighs most (1/1)
    for k in (2, 3, 4):
        assert t[int(abs(centres - 440 * k).argmin())] >= 1 / k - 1e-6
    assert (t > 0).sum() <= 8


def test_condition_index_names_what_the_model_knows():
    assert condition_index(DATA, 64, "piano") == (1, 1)
    assert condition_index(DATA, None, None) == (0, 0)
    with pytest.raises(ConditionError, match="60..67"):
        condition_index(DATA, 61, "piano")
    with pytest.raises(ConditionError, match="flute, piano"):
        condition_index(DATA, 60, "tuba")


def test_label_grid_covers_every_pair():
    grid = label_grid(DATA, 6).tolist()
    assert sorted(map(tuple, grid)) == [(p, i) for p in range(3) for i in range(2)]


@pytest.mark.parametrize("preset", ["audio-tiny", "audio-cpu"])
def test_generation_is_seeded_and_bit_identical_in_any_batch(preset):
    _, g, _ = models(preset)
    rng = np.random.default_rng(0)
    for trial in range(12):
        sizes = rng.integers(1, 6, size=rng.integers(2, 6)).tolist()
        reqs = [NoteRequest(int(n), seed=int(rng.integers(1000)), pitch=int(rng.integers(3)),
                            instrument=int(rng.integers(2))) for n in sizes]
        batched = generate_mels(g, reqs)
        for r, out in zip(reqs, batched):
            assert torch.equal(out, generate_mels(g, [r])[0]), (trial, sizes)
    a = generate_mels(g, [NoteRequest(2, seed=5, pitch=1, instrument=0)])[0]
    assert not torch.equal(a, generate_mels(g, [NoteRequest(2, seed=6, pitch=1, instrument=0)])[0])
    assert a.min() >= -100.0  # dB, floored like the features


def test_the_shared_loop_trains_the_auxiliary_classifier():
    """Real clips are tones at three pitches: within 60 steps the critic's pitch head names them."""
    cfg, g, d = models()
    cfg = apply_overrides(cfg, ["train.total_steps=60", "optim.lr_d=1e-3"])
    real_db = torch.from_numpy(np.stack([log_mel(tone_clip(p), FC) for p in DATA["pitches"]]))[:, None]
    real = normalize(real_db, DATA)
    gan = make_gan(g, d, cfg)
    seen = []

    def batches():
        while True:
            idx = torch.randint(0, 3, (16,))
            yield real[idx], torch.stack([idx, torch.zeros_like(idx)], 1)

    train(gan, batches(), cfg, lambda step, m: seen.append(m))
    assert {"aux_real", "aux_fake", "aux_acc_real", "g_loss", "d_loss"} <= set(seen[-1])
    assert seen[0]["aux_real"] > 0.9  # about ln 3 before training
    assert np.mean([m["aux_acc_real"] for m in seen[-5:]]) >= 0.9
    assert np.mean([m["aux_real"] for m in seen[-5:]]) < 0.3


def test_checkpoint_round_trip_rebuilds_the_same_generator(tmp_path):
    cfg, g, d = models()
    gan = make_gan(g, d, cfg)
    gan.step = 3
    path = ckpt.save(tmp_path / "checkpoint_000003", gan, cfg, DATA)
    g2, cfg2, data2, meta = ckpt.load_generator(path)
    assert cfg2.model.family == "spectrogram" and meta["step"] == 3 and data2["instruments"] == ["flute", "piano"]
    req = [NoteRequest(2, seed=4, pitch=2, instrument=1)]
    assert torch.equal(generate_mels(gan.g_ema, req)[0], generate_mels(g2, req)[0])


def test_griffin_lim_inversion_keeps_the_pitch_and_matches_librosa():
    mels = np.stack([log_mel(tone_clip(p), FC) for p in (52, 60, 72)])
    audio = mel_to_audio(mels, FC)
    assert audio.shape == (3, 16_000)
    assert np.abs(track_pitch(audio, 16_000, 40, 90) - [52, 60, 72]).max() < 0.3
    assert np.array_equal(audio, mel_to_audio(mels, FC))  # seeded phase: the same mels, the same audio
    # alone or in any batch, bit for bit (what lets serving batch requests without changing their bytes)
    rng = np.random.default_rng(3)
    many = np.concatenate([mels, rng.uniform(-100, 0, (4, 80, 63)).astype(np.float32)])
    seeds = [7, 0, 3, 9, 1, 4, 2]
    together = mel_to_audio(many, FC, seed=seeds)
    for i in range(len(many)):
        assert np.array_equal(together[i], mel_to_audio(many[i : i + 1], FC, seed=[seeds[i]])[0]), i

    # spectral convergence against the magnitudes it was asked for, vs librosa.griffinlim at the same iterations
    power = librosa.db_to_power(mels[1])
    target = np.sqrt(np.maximum(np.linalg.pinv(librosa.filters.mel(sr=16_000, n_fft=1024, n_mels=80)) @ power, 0))

    def convergence(y):
        s = np.abs(librosa.stft(y, n_fft=1024, hop_length=256))
        return np.linalg.norm(s - target) / np.linalg.norm(target)

    ref = librosa.griffinlim(target, n_iter=16, hop_length=256, n_fft=1024, length=16_000,
                             random_state=0, init="random")
    assert convergence(audio[1]) < 1.2 * convergence(ref)


def test_wrong_family_for_the_data_is_a_config_error(tmp_path):
    from musicgan.config import Config, ConfigError

    with pytest.raises(ConfigError, match="pianoroll' or 'spectrogram"):
        apply_overrides(Config(), ["model.family=wave"]).validate()
