"""Audio metrics on hand-built inputs with known answers: pitch tracking, accuracy, mel statistics, FD, diversity."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan import audio_metrics as AM

SR = 16_000


def harmonic_tone(midi: float, seconds: float = 1.0, harmonics: int = 5) -> np.ndarray:
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def test_pyin_hears_the_pitch_of_harmonic_tones_and_nothing_in_noise():
    pitches = [50, 60, 69, 81]
    audio = np.stack([harmonic_tone(p) for p in pitches] + [np.random.default_rng(0).normal(0, 0.01, SR)])
    detected = AM.track_pitch(audio, SR, 35, 96)
    assert np.abs(detected[:4] - pitches).max() < 0.3
    acc, _ = AM.clip_pitch_accuracy(audio[:4], np.array(pitches), SR, (48, 84))
    assert acc == 1.0
    # a clip asked to be a fifth higher is wrong
    assert AM.clip_pitch_accuracy(audio[:1], np.array([57]), SR, (48, 84))[0] == 0.0


def test_pitch_accuracy_counts_tolerance_octave_errors_and_silence():
    target = np.array([60, 60, 60, 60, 60])
    detected = np.array([60.4, 59.6, 72.0, np.nan, 60.6])  # in, in, octave error, unvoiced, just out
    assert AM.pitch_accuracy(detected, target) == pytest.approx(2 / 5)
    assert AM.pitch_accuracy(detected, target, tolerance=1.0) == pytest.approx(3 / 5)


def test_statistics_vector_of_a_constant_clip():
    mels = np.full((2, 1, 32, 16), -40.0)
    v = AM.statistics_vector(mels)
    assert v.shape == (2, 42)
    np.testing.assert_allclose(v[:, :16], -40.0)       # group means
    np.testing.assert_allclose(v[:, 16:32], 0.0)        # no movement over time
    np.testing.assert_allclose(v[:, 32:40], -40.0)      # flat loudness envelope
    np.testing.assert_allclose(v[:, 40], (32 - 1) / 2 / 32)  # centroid in the middle band
    np.testing.assert_allclose(v[:, 41], 0.0, atol=1e-12)


def test_statistics_vector_sees_where_the_energy_is_and_when():
    low = np.full((1, 1, 32, 16), -100.0)
    low[0, 0, :4, :8] = 0.0  # the lowest 4 bands, loud in the first half
    low[0, 0, :4, 8:] = -20.0  # and softer after
    v = AM.statistics_vector(low)[0]
    assert v[0] > v[15] and v[32] > v[39]  # low group louder than high; start louder than end
    assert v[40] == pytest.approx(1.5 / 32, abs=1e-3)  # power-weighted centroid: the middle of bands 0..3


def test_frechet_distance_is_zero_for_the_same_clips_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    real = rng.normal(-50, 10, size=(200, 1, 32, 16))
    assert AM.mel_fd(real, real) == pytest.approx(0.0, abs=1e-3)
    near, far = AM.mel_fd(real + 1.0, real), AM.mel_fd(real + 5.0, real)
    # a uniform +d dB moves 16 + 8 mean entries by d: FD = 24 d^2 (covariances unchanged)
    assert near == pytest.approx(24.0, rel=0.05) and far == pytest.approx(24 * 25.0, rel=0.05)


def test_diversity_ratio():
    rng = np.random.default_rng(2)
    real = rng.normal(-50, 10, size=(40, 1, 8, 8))
    assert AM.diversity_ratio(real, real) == pytest.approx(1.0)
    collapsed = np.repeat(real[:1], 40, axis=0)
    assert AM.diversity_ratio(collapsed, real) == 0.0
    assert AM.diversity_ratio(real * 2 + 50, real) == pytest.approx(2.0, rel=1e-5)
