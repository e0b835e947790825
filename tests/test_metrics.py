"""Every metric on hand-built pianorolls whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan import metrics as M

SPB, LOW = 16, 36  # grid: 16 steps per bar, pitch index 0 = MIDI 36 (a C)


def roll(n=1, tracks=2, bars=2, pitches=48):
    return np.zeros((n, tracks, bars * SPB, pitches), bool)


def play(r, i, t, start, end, midi_pitch):
    r[i, t, start:end, midi_pitch - LOW] = True


def test_empty_bar_rate():
    r = roll()
    play(r, 0, 0, 0, 4, 60)  # track 0 plays in bar 0 only
    assert M.empty_bar_rate(r, SPB) == [0.5, 1.0]


def test_used_pitch_classes_counts_per_bar_over_playing_bars():
    r = roll()
    for k, p in enumerate([60, 64, 67, 72]):  # C E G C' in bar 0 -> 3 pitch classes
        play(r, 0, 0, 4 * k, 4 * k + 4, p)
    play(r, 0, 0, 16, 32, 62)  # bar 1: D -> 1
    play(r, 0, 1, 0, 32, 48)   # track 1: one C for both bars
    assert M.used_pitch_classes(r, SPB, LOW) == [2.0, 1.0]


def test_qualified_note_rate_counts_runs_of_at_least_two_steps():
    r = roll(tracks=1)
    play(r, 0, 0, 0, 1, 60)    # 1 step: not qualified
    play(r, 0, 0, 1, 3, 62)    # 2 steps: qualified (an eighth)
    play(r, 0, 0, 3, 11, 64)   # 8 steps
    play(r, 0, 0, 11, 12, 65)  # 1 step
    assert M.qualified_note_rate(r) == [0.5]
    assert sorted(M.note_lengths(r[:, 0]).tolist()) == [1, 1, 2, 8]


def test_polyphony_rate_is_share_of_sounding_steps_with_a_chord():
    r = roll(tracks=3)
    for t, p in enumerate([60, 64, 67]):
        play(r, 0, t, 0, 8, p)     # 8 steps of a C major triad
    play(r, 0, 0, 8, 16, 60)       # 8 steps of one voice
    play(r, 0, 1, 8, 16, 60)       # unison: still one distinct pitch
    assert M.polyphony_rate(r) == pytest.approx(0.5)


def test_pitch_range_per_track():
    r = roll(n=2, tracks=1)
    play(r, 0, 0, 0, 4, 60)
    play(r, 0, 0, 4, 8, 67)
    play(r, 1, 0, 0, 4, 50)
    assert M.pitch_range(r) == [pytest.approx(3.5)]  # (7 + 0) / 2


def test_in_scale_rate_finds_the_best_key():
    r = roll(tracks=1)
    for k, p in enumerate([62, 64, 66, 67, 69, 71, 73, 74]):  # D major scale: all in scale
        play(r, 0, 0, 4 * k, 4 * k + 4, p)
    assert M.in_scale_rate(r, LOW) == 1.0
    play(r, 0, 0, 0, 4, 65)  # add an F natural for 4 cells, against 32 in-scale cells
    assert M.in_scale_rate(r, LOW) == pytest.approx(32 / 36)


def test_tonal_distance_zero_for_same_chroma_and_positive_for_a_tritone():
    r = roll(tracks=3)
    play(r, 0, 0, 0, 32, 60)   # C
    play(r, 0, 1, 0, 32, 72)   # C an octave up: same chroma
    play(r, 0, 2, 0, 32, 66)   # F sharp
    td = M.tonal_distance(r, SPB, LOW)
    assert td["0-1"] == pytest.approx(0.0)
    # C (l=0) vs F# (l=6): opposite on the circle of fifths (7*pi) and on the minor-thirds circle
    # (9*pi), both radius 1, so 2 apart on each; the same point on the major-thirds circle (4*pi).
    assert td["0-2"] == pytest.approx(np.sqrt(2**2 + 2**2))


def test_statistics_vector_layout():
    r = roll(n=3, tracks=2)
    play(r, 0, 0, 0, 4, 60)
    play(r, 0, 0, 4, 8, 67)  # a leap of +7
    v = M.statistics_vector(r, SPB, LOW)
    assert v.shape == (3, 12 + 25 + 6 * 2 + 1)
    assert v[0, :12].sum() == pytest.approx(1.0)
    assert v[0, 12 + 12 + 7] == 1.0  # interval +7 bin
    assert v[1].sum() == pytest.approx(2 * 1.0)  # silent phrase: only its two empty-bar rates (1.0 each)


def test_frechet_distance_is_zero_for_same_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # same covariance, means 2 apart on each axis -> |mu1-mu2|^2 = 12
    assert M.frechet_distance(a, a + 2.0) == pytest.approx(12.0, rel=1e-3)


def test_diversity_ratio_catches_mode_collapse():
    rng = np.random.default_rng(1)
    real = rng.random((64, 2, 32, 12)) > 0.8
    collapsed = np.repeat(real[:1], 64, axis=0)
    assert M.diversity_ratio(collapsed, real) == 0.0
    assert M.diversity_ratio(real[::-1].copy(), real) == pytest.approx(1.0)


def test_copy_rate_flags_near_duplicates_only():
    rng = np.random.default_rng(2)
    train = rng.random((50, 1, 32, 12)) > 0.7
    copy = train[:1].copy()
    flips = np.argwhere(copy)[:2]  # drop 2 of ~115 cells: still > 90% shared
    for f in flips:
        copy[tuple(f)] = False
    fresh = rng.random((3, 1, 32, 12)) > 0.7
    generated = np.concatenate([copy, fresh])
    assert M.copy_rate(generated, train) == pytest.approx(1 / 4)
