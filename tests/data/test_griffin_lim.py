"""The batched Griffin-Lim (musicgan/data/griffin_lim.py) against the same algorithm written with
torch.stft/torch.istft, and its batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgan.config import FeatureConfig
from musicgan.data.audio import mel_to_audio
from musicgan.data.griffin_lim import MOMENTUM, _plan, griffin_lim

N_FFT, HOP, LENGTH, FRAMES = 1024, 256, 16_000, 63


def reference(magnitude: torch.Tensor, n_iter: int, seeds) -> np.ndarray:
    """librosa's fast Griffin-Lim with torch.stft/istft framing, clip by clip (the oracle)."""
    window = torch.hann_window(N_FFT)
    out = []
    for mag, seed in zip(magnitude, seeds):
        angles = torch.polar(torch.ones(mag.shape), 2 * np.pi * torch.rand(
            mag.shape, generator=torch.Generator().manual_seed(seed)))
        rebuilt = torch.zeros_like(angles)
        for _ in range(n_iter):
            previous = rebuilt
            y = torch.istft(angles * mag, N_FFT, HOP, window=window, length=LENGTH)
            rebuilt = torch.stft(y, N_FFT, HOP, window=window, return_complex=True)
            angles = rebuilt - MOMENTUM / (1 + MOMENTUM) * previous
            angles = angles / (angles.abs() + 1e-16)
        out.append(torch.istft(angles * mag, N_FFT, HOP, window=window, length=LENGTH).numpy())
    return np.stack(out)


def magnitudes(n: int, seed: int = 0) -> torch.Tensor:
    """Spectra of a few decaying harmonic tones: what Griffin-Lim sees from the note clips."""
    t = np.arange(LENGTH) / LENGTH
    rng = np.random.default_rng(seed)
    clips = [sum(np.sin(2 * np.pi * k * rng.uniform(100, 800) * t) / k for k in (1, 2, 3)) * np.exp(-3 * t)
             for _ in range(n)]
    y = torch.tensor(np.stack(clips), dtype=torch.float32)
    return torch.stft(y, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs()


@pytest.mark.parametrize("n_iter", [0, 1, 8])
def test_matches_the_torch_stft_istft_algorithm(n_iter):
    mag, seeds = magnitudes(3), [5, 0, 11]
    ours = griffin_lim(mag, N_FFT, HOP, LENGTH, n_iter, seeds)
    ref = reference(mag, n_iter, seeds)
    assert ours.shape == (3, LENGTH) and ours.dtype == np.float32
    # the same algorithm, other rounding: far below the signal (peak about 1)
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()
    # and the iterations do something: the 8-iteration audio is not the 0-iteration audio
    if n_iter == 8:
        assert np.abs(ours - griffin_lim(mag, N_FFT, HOP, LENGTH, 0, seeds)).max() > 0.01


def test_each_clip_is_bit_identical_alone_in_any_batch_and_any_split():
    fc = FeatureConfig(kind="mel", clip_seconds=1.0, n_mels=80)
    rng = np.random.default_rng(1)
    # 16 clips of varied dB values, floor included: torch's float32 pow (the old dB -> power step)
    # gave some of these clips other bytes in a batch than alone
    mels = np.where(rng.random((16, 80, 63)) < 0.3, -100.0, rng.uniform(-90, 20, (16, 80, 63))).astype(np.float32)
    seeds = list(range(16))
    together = mel_to_audio(mels, fc, seed=seeds)
    for i in range(16):
        assert np.array_equal(together[i], mel_to_audio(mels[i : i + 1], fc, seed=[seeds[i]])[0]), i
    threads = torch.get_num_threads()
    try:  # one thread: one part instead of several, the same bytes
        torch.set_num_threads(1)
        assert np.array_equal(together, mel_to_audio(mels, fc, seed=seeds))
    finally:
        torch.set_num_threads(threads)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="seeds for"):
        griffin_lim(magnitudes(2), N_FFT, HOP, LENGTH, 1, [0])
    with pytest.raises(ValueError, match="frames do not match"):
        _plan(N_FFT, HOP, LENGTH, FRAMES + 1)
    with pytest.raises(ValueError, match="too short"):
        _plan(N_FFT, HOP, 400, 2)
    assert griffin_lim(torch.zeros(0, 513, FRAMES), N_FFT, HOP, LENGTH, 4, []).shape == (0, LENGTH)
