"""Audio-quality metrics for single-note clips: offline, no downloaded weights.

- **Pitch accuracy**: librosa's pYIN (Mauch & Dixon 2014; a probabilistic YIN, no learned weights)
  tracks f0 in each clip; the clip's pitch is the median MIDI pitch of its voiced frames, and it
  counts as right when it is within half a semitone of the pitch asked for. A clip with no voiced
  frame, or an octave error, is wrong. The search range is an octave beyond the data's pitches on
  each side, so octave errors can be heard. The same tracker on the training clips, inverted the
  same way, is the ceiling a generator can reach through this pipeline.
- **Fréchet distance** between Gaussians fitted to :func:`statistics_vector` of real and generated
  log-mel clips (the same formula as the pianoroll FMD, :func:`musicgan.metrics.frechet_distance`).
- **Diversity**: mean pairwise L1 distance (dB per cell) among generated clips divided by the same
  among real clips (1.0 = as varied as the data; near 0 = mode collapse).
"""

from __future__ import annotations

import numpy as np

from musicgan.metrics import frechet_distance

PITCH_TOLERANCE_SEMITONES = 0.5
BAND_GROUPS = 16
TIME_SEGMENTS = 8


def track_pitch(audio: np.ndarray, sample_rate_hz: int, low_midi: float, high_midi: float) -> np.ndarray:
    """Median voiced pitch (MIDI, fractional) of each clip ``[N, samples]``; NaN where nothing is voiced."""
    import librosa

    audio = np.atleast_2d(np.asarray(audio, np.float32))
    f0, voiced, _ = librosa.pyin(audio, fmin=librosa.midi_to_hz(low_midi), fmax=librosa.midi_to_hz(high_midi),
                                 sr=sample_rate_hz, frame_length=1024, hop_length=256, resolution=0.25)
    midi = librosa.hz_to_midi(np.where(voiced, f0, np.nan))
    out = np.full(len(audio), np.nan)
    for i, row in enumerate(midi):
        if np.isfinite(row).any():
            out[i] = float(np.nanmedian(row))
    return out


def pitch_accuracy(detected_midi: np.ndarray, target_midi: np.ndarray,
                   tolerance: float = PITCH_TOLERANCE_SEMITONES) -> float:
    """Share of clips whose detected pitch is within ``tolerance`` semitones of the target (NaN = wrong)."""
    detected, target = np.asarray(detected_midi, float), np.asarray(target_midi, float)
    if detected.size == 0:
        return float("nan")
    ok = np.isfinite(detected) & (np.abs(detected - target) <= tolerance)
    return float(ok.mean())


def clip_pitch_accuracy(audio: np.ndarray, target_midi: np.ndarray, sample_rate_hz: int,
                        pitch_range: tuple[int, int]) -> tuple[float, np.ndarray]:
    """Pitch accuracy of audio clips against the pitches asked for, and the detected pitches."""
    low, high = pitch_range
    detected = track_pitch(audio, sample_rate_hz, low - 13, high + 13)
    return pitch_accuracy(detected, target_midi), detected


def statistics_vector(mels: np.ndarray) -> np.ndarray:
    """Per-clip statistics ``[N, 42]`` of log-mel clips ``[N, 1, n_mels, frames]`` (dB).

    The mel bands are split into 16 equal groups and time into 8 equal segments:
    16 group means (the spectral envelope), 16 group standard deviations over time (how each
    region moves), 8 segment means over all bands (the loudness envelope: attack, sustain,
    release), and the mean and standard deviation over frames of the spectral centroid (in mel
    bins / n_mels, power-weighted).
    """
    x = np.asarray(mels, np.float64).reshape(len(mels), mels.shape[-2], mels.shape[-1])
    n, m, t = x.shape
    groups = np.array_split(np.arange(m), BAND_GROUPS)
    g = np.stack([x[:, idx].mean(1) for idx in groups], 1)  # [N, 16, frames]
    segments = np.array_split(np.arange(t), TIME_SEGMENTS)
    env = np.stack([x[:, :, idx].mean((1, 2)) for idx in segments], 1)  # [N, 8]
    power = 10.0 ** (x / 10.0)
    centroid = (power * np.arange(m)[None, :, None]).sum(1) / np.maximum(power.sum(1), 1e-12) / m  # [N, frames]
    return np.concatenate([g.mean(2), g.std(2), env, centroid.mean(1, keepdims=True),
                           centroid.std(1, keepdims=True)], 1)


def mel_fd(generated: np.ndarray, real: np.ndarray) -> float:
    return frechet_distance(statistics_vector(generated), statistics_vector(real))


def mean_pairwise_l1(mels: np.ndarray, max_items: int = 256, seed: int = 0) -> float:
    x = np.asarray(mels, np.float32).reshape(len(mels), -1)
    if len(x) > max_items:
        x = x[np.random.default_rng(seed).choice(len(x), max_items, replace=False)]
    if len(x) < 2:
        return 0.0
    total, count = 0.0, 0
    for i in range(len(x) - 1):
        total += float(np.abs(x[i + 1:] - x[i]).mean(1).sum())
        count += len(x) - 1 - i
    return total / count


def diversity_ratio(generated: np.ndarray, real: np.ndarray) -> float:
    base = mean_pairwise_l1(real)
    return mean_pairwise_l1(generated) / base if base > 0 else float("nan")
