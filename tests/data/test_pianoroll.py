"""The ingest hot path on hand-built MIDI with known answers, and against pretty_midi on the corpus."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan.config import FeatureConfig
from musicgan.data.pianoroll import BadInput, midi_to_phrases, pianoroll_of_file, roll_to_pretty_midi
from tests.midi_factory import midi_bytes

TPQ = 480
STEP = TPQ // 4  # one sixteenth at steps_per_bar=16


def test_roll_marks_exactly_the_notes_cells():
    fc = FeatureConfig(track_names=["a", "b"])
    data = midi_bytes([[(0, 4 * STEP, 60), (4 * STEP, 6 * STEP, 62)], [(2 * STEP, 3 * STEP, 40)]])
    roll = pianoroll_of_file(data, fc)
    assert roll.shape == (2, 6, fc.n_pitches)
    expected = np.zeros_like(roll)
    expected[0, 0:4, 60 - 36] = True
    expected[0, 4:6, 62 - 36] = True
    expected[1, 2:3, 40 - 36] = True
    np.testing.assert_array_equal(roll, expected)


def test_note_shorter_than_a_step_vanishes_and_off_grid_start_floors():
    fc = FeatureConfig(track_names=["a"], track_mode="merge")
    # starts half-way through step 1, ends inside step 3 -> steps 1..2 (floor, like pretty_midi)
    data = midi_bytes([[(STEP + STEP // 2, 3 * STEP + 10, 50), (5 * STEP + 1, 5 * STEP + 20, 55)]])
    roll = pianoroll_of_file(data, fc)
    assert roll[0, :, 50 - 36].nonzero()[0].tolist() == [1, 2]
    assert not roll[0, :, 55 - 36].any()


def test_phrases_start_on_downbeats_and_respect_hop():
    fc = FeatureConfig(track_names=["m"], track_mode="merge", bars=2, hop_bars=1)
    # 5 bars of continuous quarter notes, pitch = 60 + bar number
    notes = [(b * 16 * STEP + q * 4 * STEP, b * 16 * STEP + (q + 1) * 4 * STEP, 60 + b) for b in range(5) for q in range(4)]
    r = midi_to_phrases(midi_bytes([notes]), fc)
    assert r.start_bars.tolist() == [0, 1, 2, 3]
    ph = r.phrases.transpose(0, 2, 1, 3)  # -> [N, tracks, steps, pitches]
    assert ph.shape == (4, 1, 32, fc.n_pitches)
    for i, bar in enumerate(r.start_bars):
        assert ph[i, 0, 0].nonzero()[0].tolist() == [60 + bar - 36]
        assert ph[i, 0, 16].nonzero()[0].tolist() == [60 + bar + 1 - 36]


def test_three_four_meter_uses_its_own_barlines():
    fc = FeatureConfig(track_names=["m"], track_mode="merge", bars=1, hop_bars=1)
    notes = [(i * 4 * STEP, (i + 1) * 4 * STEP, 60) for i in range(12)]  # 12 quarters = 4 bars of 3/4
    r = midi_to_phrases(midi_bytes([notes], numerator=3, denominator=4), fc)
    # phrases are one 4/4 bar long (16 steps) and start every 3/4 bar (12 steps)
    assert r.start_bars.tolist() == [0, 1, 2]


def test_transpose_shifts_pitches_and_drops_what_leaves_the_range():
    fc = FeatureConfig(track_names=["m"], track_mode="merge", bars=1, pitch_low=60, pitch_high=72, transpose=[-1, 0, 2])
    notes = [(i * 4 * STEP, (i + 1) * 4 * STEP, p) for i, p in enumerate([60, 64, 67, 70])]  # C E G Bb
    r = midi_to_phrases(midi_bytes([notes]), fc)
    by_shift = {int(t): r.phrases[r.transposes == t] for t in np.unique(r.transposes)}
    assert set(by_shift) == {0}  # -1 pushes C below 60; +2 pushes Bb to 72 (exclusive)
    assert r.phrases_out_of_range == 2
    fc2 = FeatureConfig(track_names=["m"], track_mode="merge", bars=1, pitch_low=58, pitch_high=74, transpose=[-2, 0, 3])
    r2 = midi_to_phrases(midi_bytes([notes]), fc2)
    base = r2.phrases[r2.transposes == 0][0]
    up3 = r2.phrases[r2.transposes == 3][0]
    np.testing.assert_array_equal(up3[:, :, 3:], base[:, :, :-3])
    assert r2.transposes.tolist().count(-2) == 1


def test_sparse_phrases_are_dropped():
    fc = FeatureConfig(track_names=["m"], track_mode="merge", bars=1, min_active_fraction=0.5)
    notes = [(0, 4 * STEP, 60), (16 * STEP, 32 * STEP, 62)]  # bar 0: 25% sounding, bar 1: 100%
    r = midi_to_phrases(midi_bytes([notes]), fc)
    assert r.start_bars.tolist() == [1]
    assert r.phrases_too_sparse == 1


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"hello, this is text and not a MIDI file", "not a MIDI"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x01\x00\x00\x90", "unreadable"),
])
def test_bad_bytes_are_bad_input_with_a_reason(data, reason):
    with pytest.raises(BadInput, match=reason):
        midi_to_phrases(data, FeatureConfig())


def test_no_notes_and_invalid_time_signature_are_bad_input():
    with pytest.raises(BadInput, match="no notes"):
        midi_to_phrases(midi_bytes([[]]), FeatureConfig())
    data = midi_bytes([[(0, 64 * STEP, 60)]], numerator=0)
    with pytest.raises(BadInput, match="invalid time signature 0/4"):
        midi_to_phrases(data, FeatureConfig())


def test_absurd_tempo_is_kept_with_a_warning():
    data = midi_bytes([[(i * STEP, (i + 1) * STEP, 60) for i in range(64)]], tempo_us=1)
    r = midi_to_phrases(data, FeatureConfig(track_names=["m"], track_mode="merge"))
    assert len(r.phrases) == 1
    assert any("tempo" in w for w in r.warnings)


def test_too_long_file_is_refused_without_allocating_it():
    fc = FeatureConfig(track_names=["m"], track_mode="merge", max_steps_per_file=10_000)
    data = midi_bytes([[(0, 10_001 * STEP, 60)]])
    with pytest.raises(BadInput, match="too long"):
        midi_to_phrases(data, fc)


def test_roll_equals_pretty_midi_get_piano_roll_on_corpus(bach_midi):
    """The project's roll equals pretty_midi's, on the same grid, for every tested chorale."""
    import pretty_midi

    fc = FeatureConfig()
    steps_per_quarter = fc.steps_per_bar // 4
    checked = 0
    for path in bach_midi:
        ours = pianoroll_of_file(path.read_bytes(), fc)  # [tracks, steps, pitches]
        pm = pretty_midi.PrettyMIDI(str(path))
        tempo_times, qpms = pm.get_tempo_changes()
        assert len(qpms) == 1, "corpus MIDI has one tempo"
        # pretty_midi turns ticks into float seconds and truncates start*fs; a boundary exactly on the
        # grid can come out as 7.9999999 -> 7. A relative nudge of 1e-9 removes that float error
        # (it is ~1e-15) without moving any genuinely off-grid note.
        fs = steps_per_quarter * qpms[0] / 60.0 * (1 + 1e-9)
        for t, inst in enumerate(pm.instruments):
            theirs = inst.get_piano_roll(fs=fs)[fc.pitch_low : fc.pitch_high].T > 0  # [frames, pitches]
            n = min(len(theirs), ours.shape[1])
            assert abs(len(theirs) - ours.shape[1]) <= 1
            np.testing.assert_array_equal(ours[t, :n], theirs[:n], err_msg=f"{path.name} track {t}")
            checked += 1
    assert checked >= 4 * 20


def test_roll_to_pretty_midi_round_trips():
    fc = FeatureConfig()
    rng = np.random.default_rng(0)
    roll = np.zeros((4, 64, fc.n_pitches), bool)
    for t in range(4):
        for s in range(0, 64, 4):
            roll[t, s : s + rng.integers(1, 5), rng.integers(0, fc.n_pitches)] = True
    pm = roll_to_pretty_midi(roll, fc, tempo_qpm=120)
    assert [i.name for i in pm.instruments] == fc.track_names
    fs = (fc.steps_per_bar // 4) * 120 / 60
    for t, inst in enumerate(pm.instruments):
        back = inst.get_piano_roll(fs=fs)[fc.pitch_low : fc.pitch_high].T > 0
        np.testing.assert_array_equal(back, roll[t, : len(back)])
        assert not roll[t, len(back):].any()


def test_midi_bytes_match_pretty_midi_writer_and_known_notes():
    """symusic's fast writer (used by serving) gives the notes of the pretty_midi path, which are known."""
    import io

    import pretty_midi

    from musicgan.config import FeatureConfig
    from musicgan.data.pianoroll import roll_notes, roll_to_midi_bytes, roll_to_pretty_midi

    fc = FeatureConfig(track_names=["a", "b"], pitch_low=60, pitch_high=72)
    roll = np.zeros((2, 16, 12), dtype=bool)
    roll[0, 0:4, 0] = True  # C4 for a quarter note (4 sixteenths)
    roll[0, 4:6, 4] = True  # E4 for an eighth
    roll[0, 8:12, 0] = True  # C4 again after a rest: a separate note
    roll[1, 2:16, 11] = True  # B4 held to the end
    assert [tuple(map(int, x)) for x in zip(*roll_notes(roll[0]))] == [(0, 0, 4), (0, 8, 12), (4, 4, 6)]
    got = pretty_midi.PrettyMIDI(io.BytesIO(roll_to_midi_bytes(roll, fc, tempo_qpm=120)))
    ref = roll_to_pretty_midi(roll, fc, tempo_qpm=120)
    quarter_s = 0.5
    expect = {("a", 60, 0.0, 1.0), ("a", 64, 1.0, 1.5), ("a", 60, 2.0, 3.0), ("b", 71, 0.5, 4.0)}
    for pm in (got, ref):
        notes = {(i.name, n.pitch, round(n.start / quarter_s, 3), round(n.end / quarter_s, 3))
                 for i in pm.instruments for n in i.notes}
        assert notes == expect
