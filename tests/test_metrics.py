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


# ---------------------------------------------------------------------------------------------
# voice measures: one note per quarter-note beat (4 steps on the 16-step grid)

BEAT = SPB // 4


def voices(*lines, n_pitches=60):
    """One phrase from per-voice lists of MIDI pitches, one per quarter-note beat (None: rest)."""
    r = np.zeros((1, len(lines), BEAT * max(len(line) for line in lines), n_pitches), bool)
    for t, line in enumerate(lines):
        for b, p in enumerate(line):
            if p is not None:
                play(r, 0, t, b * BEAT, (b + 1) * BEAT, p)
    return r


def test_voice_lines_take_a_voices_highest_pitch_and_mark_rests():
    r = voices([60, None, 64])
    r[0, 0, 0, 67 - LOW] = True  # a second pitch on step 0 of the same voice
    lines = M.voice_lines(r)
    assert lines[0, 0, :5].tolist() == [67 - LOW, 60 - LOW, 60 - LOW, 60 - LOW, -1]
    assert M.beat_lines(r, SPB)[0, 0].tolist() == [67 - LOW, -1, 64 - LOW]


def test_melodic_leaps_skip_rests_and_repeats_and_never_cross_phrases():
    r = roll(n=2, tracks=2)
    play(r, 0, 0, 0, 4, 60)
    play(r, 0, 0, 4, 8, 64)     # +4
    play(r, 0, 0, 12, 20, 67)   # a rest, then +3 (the rest is skipped)
    play(r, 0, 0, 20, 24, 67)   # the same pitch again: one longer note, no leap
    play(r, 1, 0, 0, 4, 48)     # phrase 1 starts low: no leap from phrase 0's last note
    play(r, 1, 0, 4, 8, 62)     # +14: over an octave
    play(r, 1, 0, 8, 12, 50)    # -12: an octave exactly, not over
    assert sorted(M.voice_leaps(r)[0].tolist()) == [3, 4, 12, 14]
    assert M.melodic_leap_semitones(r) == [pytest.approx(33 / 4), 0.0]  # track 1 never plays
    assert M.octave_leap_rate(r) == [pytest.approx(1 / 4), 0.0]


def test_parallel_fifths_counted_only_in_similar_motion_between_moving_voices():
    r = voices([72, 74, 76, 77, 79],   # upper
               [65, 67, 69, 69, 72])   # lower
    # 0-1 and 1-2: fifth -> fifth, both up: parallel; 2-3: the lower voice holds (oblique);
    # 3-4: minor sixth (8) -> fifth, both up: not fifth -> fifth
    assert M.parallel_perfect_per_100(r, SPB) == pytest.approx(100 * 2 / 4)


def test_parallel_octaves_compound_and_unison_count_but_contrary_and_direct_motion_do_not():
    r = voices([72, 74, 76, 79, 84],
               [48, 50, 40, 48, 48])
    # 0-1: double octave -> double octave, both up: parallel
    # 1-2: octaves in contrary motion (up, down): not counted
    # 2-3: triple octave -> fifth, both up (direct motion, different classes): not counted
    # 3-4: the lower voice holds: not counted
    assert M.parallel_perfect_per_100(r, SPB) == pytest.approx(100 * 1 / 4)
    assert M.parallel_perfect_per_100(voices([60, 62], [60, 62]), SPB) == pytest.approx(100.0)  # unisons


def test_parallels_use_every_voice_pair_and_skip_transitions_with_a_rest():
    r = voices([72, 74], [67, 67], [48, 50])
    # soprano-bass octaves in parallel; soprano-alto and alto-bass are oblique: 1 of 3 transitions
    assert M.parallel_perfect_per_100(r, SPB) == pytest.approx(100 / 3)
    rest = voices([72, 74, None, 76], [65, 67, 69, 71])
    assert M.parallel_perfect_per_100(rest, SPB) == pytest.approx(100.0)  # only 0-1 has both voices


def test_voice_crossing_rate_counts_adjacent_pairs_at_beats_only():
    r = voices([72, 72, 72, 72, 72],
               [67, 74, 72, None, 67],  # above the soprano at beat 1; a unison at beat 2 is no crossing
               [60, 60, 60, 60, 60])
    r[0, 1, 1, 80 - LOW] = True  # an off-beat step above the soprano: not read
    # soprano-alto: 4 beats with both, 1 crossed; alto-tenor: 4 beats, none crossed
    assert M.voice_crossing_rate(r, SPB) == pytest.approx(1 / 8)
    assert M.voice_crossing_rate(voices([60], [72]), SPB) == 1.0


def test_upper_spacing_rate_flags_upper_pairs_over_an_octave():
    r = voices([79, 76, 72],
               [64, 64, 60],        # soprano-alto: 15 (wide), 12, 12
               [55, 50, 47],        # alto-tenor: 9, 14 (wide), 13 (wide)
               [36, 36, None])      # tenor-bass: 19, 14: allowed
    # 3 wide cells among 3 + 3 + 2 adjacent-pair cells where both voices sound
    assert M.upper_spacing_rate(r, SPB) == pytest.approx(3 / 8)
    assert M.voice_crossing_rate(r, SPB) == 0.0


def test_vertical_interval_distance_is_total_variation_of_interval_classes():
    fifths = voices([67, 67], [60, 60])
    thirds = voices([64, 64], [60, 60])
    half = voices([67, 76], [60, 60])  # a fifth and a compound major third
    h = M.vertical_interval_histograms(half, SPB)
    assert h.shape == (1, 12) and h[0, 7] == 0.5 and h[0, 4] == 0.5
    assert M.vertical_interval_distance(fifths, fifths, SPB) == 0.0
    assert M.vertical_interval_distance(fifths, thirds, SPB) == pytest.approx(1.0)
    assert M.vertical_interval_distance(half, fifths, SPB) == pytest.approx(0.5)


def test_voice_metrics_pools_leaps_over_voices_and_names_per_voice_values():
    r = voices([60, 62, 64], [55, 60, 60])  # leaps: upper 2, 2; lower 5
    m = M.voice_metrics(r, SPB, ["upper", "lower"])
    assert m["leap_semitones"] == pytest.approx(3.0)  # pooled, not the mean of 2 and 5
    assert m["leap_semitones/upper"] == 2.0 and m["leap_semitones/lower"] == 5.0
    assert m["octave_leaps"] == 0.0
    assert set(m) == {"leap_semitones", "octave_leaps", "parallels_per_100", "crossing", "spacing",
                      "leap_semitones/upper", "leap_semitones/lower", "octave_leaps/upper", "octave_leaps/lower"}


def test_beat_lines_need_a_grid_with_quarter_note_beats():
    with pytest.raises(ValueError, match="multiple of 4"):
        M.beat_lines(roll(), 6)


def test_bach_keeps_its_own_voice_leading_rules(bach_midi):
    """Real chorales (the first 24): the values sit near the FIELD-NOTES' Bach figures, which a wrong
    track order, beat grid or interval rule would miss by far (reversed voices cross ~99% of beats)."""
    from musicgan.config import FeatureConfig
    from musicgan.data.pianoroll import midi_to_phrases

    fc = FeatureConfig()
    rolls = np.concatenate([midi_to_phrases(p.read_bytes(), fc).phrases for p in bach_midi]).transpose(0, 2, 1, 3)
    m = M.voice_metrics(rolls, fc.steps_per_bar, fc.track_names)
    assert len(rolls) > 200
    assert 2.2 < m["leap_semitones"] < 3.0
    assert m["leap_semitones/soprano"] < m["leap_semitones/bass"]
    assert m["octave_leaps"] < 0.005
    assert 8 < np.mean(M.pitch_range(rolls)) < 12
    assert m["parallels_per_100"] < 1.0
    assert m["crossing"] < 0.02
    assert m["spacing"] < 0.015
    assert M.voice_crossing_rate(rolls[:, ::-1], fc.steps_per_bar) > 0.9
