"""The creation assistant's measures on hand-built pianorolls whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan import metrics as M
from musicgan.assist import metrics as A

SPB, LOW, P = 16, 36, 48  # 16 steps per bar, pitch index 0 = MIDI 36 (a C), 48 pitches
BEAT = SPB // 4
C_MAJOR = [60, 62, 64, 65, 67, 69, 71]
G_MAJOR = [67, 69, 71, 72, 74, 76, 78]


def roll(n=1, tracks=4, bars=1):
    return np.zeros((n, tracks, bars * SPB, P), bool)


def play(r, i, t, start, end, midi_pitch):
    r[i, t, start:end, midi_pitch - LOW] = True


def melody(r, i, t, midi_pitches, beat_steps=BEAT):
    """One note per beat, in order, from step 0."""
    for k, m in enumerate(midi_pitches):
        play(r, i, t, k * beat_steps, (k + 1) * beat_steps, m)


# ------------------------------------------------------------------------------------------- chords


def test_beat_pitch_classes_reads_each_beats_first_step_over_tracks():
    r = roll()
    play(r, 0, 0, 0, 4, 72)  # C on beat 0
    play(r, 0, 1, 0, 4, 64)  # E on beat 0, another track
    play(r, 0, 2, 1, 4, 67)  # G starts after beat 0's first step: not read
    pcs = A.beat_pitch_classes(r, SPB, LOW)
    assert pcs.shape == (1, 4, 12)
    assert np.nonzero(pcs[0, 0])[0].tolist() == [0, 4]
    assert not pcs[0, 1:].any()
    assert np.nonzero(A.beat_pitch_classes(r, SPB, LOW, tracks=[1])[0, 0])[0].tolist() == [4]


def test_chord_agreement_jaccard_per_beat():
    ceg, cea = roll(), roll()
    for t, m in enumerate([72, 67, 64, 48]):  # C G E C
        play(ceg, 0, t, 0, 4, m)
    for t, m in enumerate([72, 69, 64, 48]):  # C A E C
        play(cea, 0, t, 0, 4, m)
    assert A.chord_agreement(ceg, ceg, SPB, LOW) == 1.0
    assert A.chord_agreement(ceg, cea, SPB, LOW) == pytest.approx(2 / 4)  # {C,E} of {C,E,G,A}
    # beats 1..3 are empty in both: left out, not counted as agreement
    other = cea.copy()
    play(other, 0, 0, 4, 8, 62)  # a D on beat 1 in one of them only: overlap 0 there
    assert A.chord_agreement(ceg, other, SPB, LOW) == pytest.approx((0.5 + 0.0) / 2)


def test_chord_agreement_nothing_sounding_is_nan_and_shapes_must_match():
    assert np.isnan(A.chord_agreement(roll(), roll(), SPB, LOW))
    with pytest.raises(ValueError, match="same shape"):
        A.chord_agreement(roll(n=2), roll(n=1), SPB, LOW)


# --------------------------------------------------------------------------------------------- keys


def test_best_key_of_scales_and_empty_input():
    w = np.zeros((3, 12))
    w[0, [0, 2, 4, 5, 7, 9, 11]] = 1  # C major scale
    w[1, [7, 9, 11, 0, 2, 4, 6]] = 1  # G major scale
    assert A.best_key(w).tolist() == [0, 7, -1]
    a_minor = np.zeros(12)
    a_minor[[9, 11, 0, 2, 4, 5, 7]] = [5, 1, 2, 1, 3, 1, 1]  # A natural minor: same scale as C major
    assert int(A.best_key(a_minor)) == 0


def test_best_key_breaks_scale_ties_by_the_kk_profile():
    w = np.zeros(12)
    w[[0, 2, 4, 7, 9]] = 1  # C D E G A: held whole by C, F and G major scales
    inside = w @ M._scale_masks().T
    assert sorted(np.nonzero(inside == inside.max())[0].tolist()) == [0, 5, 7]
    assert int(A.best_key(w)) == 0  # KK sums over the set: C 23.06 > G 22.77 > F 19.59
    w[[2, 7]] = 3  # weight on D and G: G major's tonic and fifth
    assert int(A.best_key(w)) == 7


def test_best_key_refuses_bad_weights():
    with pytest.raises(ValueError, match=r"\[\.\.\., 12\]"):
        A.best_key(np.ones(11))
    with pytest.raises(ValueError, match="non-negative"):
        A.best_key(-np.ones(12))


def test_phrase_keys_and_key_agreement():
    c, g = roll(bars=2), roll(bars=2)
    melody(c, 0, 0, C_MAJOR)
    melody(g, 0, 0, G_MAJOR)
    both = np.concatenate([c, g, roll(bars=2)])  # the third phrase is silent
    assert A.phrase_keys(both, LOW).tolist() == [0, 7, -1]
    assert A.phrase_keys(both, LOW, slice(0, 4)).tolist() == [0, 7, -1]  # first beat only: C, G
    assert A.key_agreement(both, both, LOW) == 1.0  # the silent pair is left out
    assert A.key_agreement(both, np.concatenate([c, c, c]), LOW) == 0.5
    assert np.isnan(A.key_agreement(roll(), roll(), LOW))


def test_halves_key_agreement():
    same, moves = roll(bars=4), roll(bars=4)
    melody(same, 0, 0, C_MAJOR)  # bars 0-1 in C ...
    melody(same, 0, 1, [p - 12 for p in C_MAJOR] * 2)  # ... and a C-major line through bar 3
    for k, m in enumerate(C_MAJOR):
        play(moves, 0, 0, 2 * k, 2 * k + 2, m)  # bar 0: C major
    for k, m in enumerate(G_MAJOR):
        play(moves, 0, 0, 2 * SPB + 2 * k, 2 * SPB + 2 * k + 2, m)  # bar 2: G major
    rolls = np.concatenate([same, moves])
    assert A.halves_key_agreement(rolls, SPB, LOW) == 0.5
    with pytest.raises(ValueError, match="split_bar"):
        A.halves_key_agreement(rolls, SPB, LOW, split_bar=4)


# -------------------------------------------------------------------------------------------- seams


def test_seam_leap_inside_leap_and_smoothness():
    r = roll(n=2, bars=2)  # 8 beats, seam at bar 1 (step 16)
    base = [60, 62, 64, 66, 73, 75, 77, 79]  # steps of 2, a 7 at the seam
    for i in range(2):
        for t in range(4):
            melody(r, i, t, [m - 5 * t for m in base])
    assert A.seam_leap(r, [SPB]) == 7.0
    assert A.inside_leap(r, [SPB]) == 2.0
    assert A.seam_smoothness(r, [SPB]) == 3.5
    assert A.inside_leap(r) == pytest.approx((6 * 2 + 7) / 7)  # no seams: every leap


def test_inside_leap_without_seams_is_the_pooled_melodic_leap():
    rng = np.random.default_rng(0)
    r = roll(n=6, bars=2)
    for i in range(6):
        for t in range(4):
            steps = rng.integers(0, 3, 2 * SPB)  # 0 = rest, else a pitch
            line = rng.integers(40, 50, 2 * SPB)
            for s in range(2 * SPB):
                if steps[s]:
                    r[i, t, s, line[s] - LOW] = True
    pooled = np.concatenate(M.voice_leaps(r))
    assert A.inside_leap(r) == pytest.approx(pooled.mean())


def test_held_note_across_the_seam_counts_as_a_zero_leap():
    r = roll(bars=2)
    play(r, 0, 0, 0, 4, 60)
    play(r, 0, 0, 4, 20, 62)  # held from beat 1 across the seam at step 16
    play(r, 0, 0, 20, 24, 65)
    assert A.seam_leap(r, [SPB]) == 0.0
    assert A.inside_leap(r, [SPB]) == pytest.approx((2 + 3) / 2)  # both note changes are off the seam


def test_seam_leap_skips_rests_and_voices_silent_on_one_side():
    r = roll(bars=2)
    play(r, 0, 0, 8, 12, 60)
    play(r, 0, 0, 20, 24, 64)  # rest over the seam: 60 -> 64 still crosses it
    play(r, 0, 1, 0, 4, 50)  # alto sounds only before the seam: no seam leap for it
    play(r, 0, 2, 12, 16, 55)
    play(r, 0, 2, 16, 20, 55)  # same pitch struck again at the seam: one note, leap 0
    assert A.seam_leap(r, [SPB]) == pytest.approx((4 + 0) / 2)
    assert np.isnan(A.inside_leap(r, [SPB]))  # the one note change straddles the seam
    assert np.isnan(A.seam_smoothness(r, [SPB]))


def test_seams_on_a_list_of_pieces_of_different_lengths():
    short, long_ = roll(bars=2)[0], roll(bars=3)[0]
    melody(short[None], 0, 0, [60, 62, 64, 66, 71, 73, 75, 77])  # 5 at its seam (16)
    melody(long_[None], 0, 0, [48, 50, 52, 54, 57, 59, 61, 63, 66, 68, 70, 72])  # 3 at 16, 3 at 32
    assert A.seam_leap([short, long_], [[16], [16, 32]]) == pytest.approx((5 + 3 + 3) / 3)
    assert A.inside_leap([short, long_], [[16], [16, 32]]) == 2.0
    with pytest.raises(ValueError, match="one list of seam steps per piece"):
        A.seam_leap([short, long_], [16])
    with pytest.raises(ValueError, match="one list of seam steps per piece"):
        A.seam_leap([short], [16])
    with pytest.raises(ValueError, match="inside the phrase"):
        A.seam_leap(short[None], [2 * SPB])


# -------------------------------------------------------------------------------------- long pieces


def key_window(midi_pitches, bars=4):
    r = roll(tracks=1, bars=bars)[0]
    for k, m in enumerate(midi_pitches):
        play(r[None], 0, 0, 4 * k, 4 * k + 4, m)
    return r


def test_window_keys_and_key_change_rate():
    piece = np.concatenate([key_window(C_MAJOR), key_window(C_MAJOR), key_window(G_MAJOR),
                            key_window(G_MAJOR, bars=2)], axis=1)  # C, C, G, then half a window
    assert A.window_keys(piece, SPB, LOW).tolist() == [0, 0, 7]  # the partial window is left out
    assert A.key_change_rate([piece], SPB, LOW) == 0.5
    silent = np.concatenate([key_window(C_MAJOR), key_window([]), key_window(G_MAJOR)], axis=1)
    assert A.window_keys(silent, SPB, LOW).tolist() == [0, -1, 7]
    assert np.isnan(A.key_change_rate([silent], SPB, LOW))  # both pairs touch the silent window
    assert A.key_change_rate([piece, silent], SPB, LOW) == 0.5


def test_reassemble_pieces_tiles_chains_and_splits_at_a_missing_phrase():
    bars = 4
    starts = {"a": [0, 1, 2, 4, 5, 6, 8, 12, 13, 16], "b": [0, 1, 4, 9], "c": [3, 7, 11, 15]}
    x, source, start_bar = [], [], []
    for name, ss in starts.items():
        for s in ss:
            phrase = roll(tracks=1, bars=bars)[0]
            phrase[0, :, s] = True  # pitch index = the phrase's start bar, so the order can be read back
            phrase[0, 0, 40 + "abc".index(name)] = True  # and the file
            x.append(phrase)
            source.append(name)
            start_bar.append(float(s))
    pieces = A.reassemble_pieces(np.stack(x), source, start_bar, bars_per_phrase=bars)

    def describe(piece):
        file = "abc"[int(np.nonzero(piece[0, 0, 40:43])[0][0])]
        return file, [int(np.nonzero(piece[0, k * bars * SPB + 1])[0][0]) for k in range(piece.shape[1] // (bars * SPB))]

    # a: chain 0-4-8-12-16 (5 phrases) taken first; 1-5 and 2-6 overlap it; 13 alone. b: 0-4, 1 and 9
    # alone. c: 3-7-11-15.
    full = [("a", [0, 4, 8, 12, 16]), ("b", [0, 4]), ("c", [3, 7, 11, 15])]
    assert [describe(p) for p in pieces] == full
    assert pieces[0].shape == (1, 5 * bars * SPB, P)

    # Without phrase 8, file a's chains are 0-4, 1-5, 2-6 and 12-16 (2 phrases each): 0-4 (earliest)
    # is taken, 1-5 and 2-6 overlap it, 12-16 does not: the missing phrase splits a in two.
    keep = [i for i, (n, s) in enumerate(zip(source, start_bar)) if not (n == "a" and s == 8)]
    pieces = A.reassemble_pieces(np.stack(x)[keep], np.array(source)[keep], np.array(start_bar)[keep], bars)
    assert [describe(p) for p in pieces][:2] == [("a", [0, 4]), ("a", [12, 16])]
    twice = A.reassemble_pieces(np.concatenate([np.stack(x), np.stack(x)]), source * 2, start_bar * 2, bars)
    assert [describe(p) for p in twice] == full  # every file listed twice: each phrase kept once
    with pytest.raises(ValueError, match="two different phrases at bar 0"):
        A.reassemble_pieces(np.stack(x)[:2], ["a", "a"], [0, 0], bars)
    with pytest.raises(ValueError, match="whole bar"):
        A.reassemble_pieces(np.stack(x)[:1], ["a"], [0.5], bars)


def test_reassemble_pieces_keeps_non_overlapping_chains_of_one_file():
    bars = 4
    ss = [0, 4, 9, 13, 17]  # chains 0-4 and 9-13-17 do not overlap: both kept
    x = np.zeros((len(ss), 1, bars * SPB, P), bool)
    for i, s in enumerate(ss):
        x[i, 0, :, s] = True
    pieces = A.reassemble_pieces(x, ["f"] * len(ss), ss, bars)
    firsts = [[int(np.nonzero(p[0, k * bars * SPB])[0][0]) for k in range(p.shape[1] // (bars * SPB))] for p in pieces]
    assert firsts == [[0, 4], [9, 13, 17]]


# ------------------------------------------------------------------------------ spread, range, baseline


def test_spread_is_zero_for_identical_samples_and_counts_generated_cells_only():
    given = np.zeros((1, 4, SPB), bool)
    given[:, 0] = True  # soprano given
    a = roll()
    melody(a, 0, 0, [72, 74, 76, 77])
    melody(a, 0, 1, [64, 65, 67, 69])
    assert A.spread(np.stack([a, a, a]), given) == 0.0
    b = a.copy()
    b[0, 0] = False
    melody(b, 0, 0, [60, 60, 60, 60])  # differs only in the given soprano: not counted
    assert A.spread(np.stack([a, b]), given) == 0.0
    assert A.spread(np.stack([a, b])) == 4 * BEAT * 2  # without a mask: 16 steps x 2 differing cells
    c = a.copy()
    c[0, 1, 0:4] = False
    play(c, 0, 1, 0, 4, 62)  # alto's first beat moved: 2 x 4 differing cells
    # pairs (a,b) 0, (a,c) 8, (b,c) 8 -> mean over ordered pairs 16/3
    assert A.spread(np.stack([a, b, c]), given) == pytest.approx(16 / 3)
    with pytest.raises(ValueError, match="at least 2 samples"):
        A.spread(a[None], given)


def test_spread_reference_pairs_different_phrases():
    x = roll(n=3)
    melody(x, 0, 1, [60] * 4)
    melody(x, 1, 1, [62] * 4)
    melody(x, 2, 1, [62] * 4)
    melody(x, 2, 0, [72] * 4)  # differs from phrase 1 only in the given track
    given = np.zeros((4, SPB), bool)
    given[0] = True
    # pairs: (0,1) 32, (0,2) 32, (1,2) 0 over the alto's cells; drawn uniformly among i != j
    ref = A.spread_reference(x, given, seed=0, max_pairs=6000)
    assert ref == pytest.approx(2 / 3 * 32, rel=0.05)
    assert A.spread_reference(x, given, seed=1) == A.spread_reference(x, given, seed=1)
    same = np.repeat(x[:1], 5, axis=0)
    assert A.spread_reference(same, given) == 0.0


def test_out_of_range_rate():
    r = roll(tracks=2)
    play(r, 0, 0, 0, 4, 60)  # index 24: in (20, 30)
    play(r, 0, 0, 4, 8, 70)  # index 34: above it
    play(r, 0, 1, 0, 8, 40)  # index 4: in (0, 4), inclusive bound
    assert A.out_of_range_rate(r, [(20, 30), (0, 4)]) == pytest.approx(4 / 16)
    assert A.out_of_range_rate(r, [(20, 34), (0, 3)]) == pytest.approx(8 / 16)
    assert np.isnan(A.out_of_range_rate(roll(tracks=2), [(0, 1), (0, 1)]))
    with pytest.raises(ValueError, match="one \\(low_index, high_index\\) per track"):
        A.out_of_range_rate(r, [(0, 47)])


RANGES = [(24, 43), (19, 38), (14, 33), (0, 28)]  # the bach build's own ranges (val), pitch indices


def harmonization_task(n=3, bars=2):
    r = roll(n=n, bars=bars)
    for i in range(n):
        melody(r, i, 0, (C_MAJOR if i == 0 else G_MAJOR) + [72])
        melody(r, i, 3, [48, 43, 48, 43, 48, 43, 48, 43])  # a bass that is not known below
    known = np.zeros(r.shape[:3], bool)
    known[:, 0] = True
    if n > 2:
        known[2] = False  # phrase 2: nothing known, its key comes from the whole phrase
    return r, known


def test_random_baseline_keeps_known_cells_and_stays_in_key_range_and_beats():
    r, known = harmonization_task()
    out = A.random_baseline(r, known, SPB, LOW, RANGES, seed=3)
    assert out.dtype == bool and out.shape == r.shape
    assert np.array_equal(out[known], r[known])
    assert (out.sum(-1)[~known] == 1).all()  # every missing step: exactly one pitch
    assert A.out_of_range_rate(out, RANGES) == 0.0
    scales = M._scale_masks()
    pcs = (LOW + np.arange(P)) % 12
    for i, key in enumerate([0, 7, 7]):  # C, G from the soprano; phrase 2 (none known): the whole, G
        used = out[i][~known[i]].any(0)
        assert scales[key][pcs[used]].all()
    lines = M.voice_lines(out)
    beats = lines[:, 1:].reshape(3, 3, -1, BEAT)
    assert (beats == beats[..., :1]).all()  # held through each beat


def test_random_baseline_is_deterministic_per_seed():
    r, known = harmonization_task()
    a = A.random_baseline(r, known, SPB, LOW, RANGES, seed=5)
    assert np.array_equal(a, A.random_baseline(r, known, SPB, LOW, RANGES, seed=5))
    assert not np.array_equal(a, A.random_baseline(r, known, SPB, LOW, RANGES, seed=6))


def test_random_baseline_fills_the_missing_bars_of_a_partly_known_voice():
    r, known = harmonization_task(n=1)
    known[:, :, :SPB] = True  # continuation: bar 0 known in every voice
    out = A.random_baseline(r, known, SPB, LOW, RANGES, seed=0)
    assert np.array_equal(out[:, :, :SPB], r[:, :, :SPB])
    assert (out[:, :, SPB:].sum(-1) == 1).all()


def test_random_baseline_refuses_a_range_without_scale_pitches():
    r, known = harmonization_task(n=1)
    with pytest.raises(ValueError, match="holds no pitch"):
        A.random_baseline(r, known, SPB, LOW, [(24, 43), (1, 1), (14, 33), (0, 28)], seed=0)  # C#: not in C
