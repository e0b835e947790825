"""A user's MIDI melody or piece on the model's grid: tracks, top lines, rounding, transposition, errors."""

from __future__ import annotations

import dataclasses
import io

import mido
import numpy as np
import pretty_midi
import pytest

from musicgan.assist.midi_in import (MidiInputError, melody_from_notes, output_feature_config, piece_from_notes,
                                     read_melody, read_piece)
from musicgan.config import FeatureConfig
from musicgan.data.pianoroll import roll_to_pretty_midi
from musicgan.errors import UserError
from tests.midi_factory import midi_bytes

DATA = {"steps_per_bar": 16, "pitch_low": 36, "bars": 4, "track_names": ["soprano", "alto", "tenor", "bass"],
        "example_shape": [4, 64, 48], "feature_config": dataclasses.asdict(FeatureConfig()), "labels": ["bach"]}
SOPRANO = (60, 81)  # C4..A5


def pm_file(tracks, qpm: float = 120.0, meters=()) -> bytes:
    """``tracks``: (name, [(pitch, start_beat, duration_beats), ...], is_drum). Beats are quarter notes."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    beat_s = 60.0 / qpm
    for name, notes, is_drum in tracks:
        inst = pretty_midi.Instrument(program=0, name=name, is_drum=is_drum)
        for pitch, start, dur in notes:
            inst.notes.append(pretty_midi.Note(90, pitch, start * beat_s, (start + dur) * beat_s))
        pm.instruments.append(inst)
    for num, den, beat in meters:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, beat * beat_s))
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def melody_file(notes, qpm: float = 120.0, meters=()) -> bytes:
    return pm_file([("melody", notes, False)], qpm, meters)


SCALE = [(60 + p, float(i), 1.0) for i, p in enumerate([0, 2, 4, 5, 7, 9, 11, 12])]  # C4 major, quarter notes


def test_line_tempo_length_and_roll():
    m = read_melody(melody_file(SCALE, qpm=100), DATA, SOPRANO)
    assert m.tempo_qpm == pytest.approx(100.0)
    assert (m.n_bars, m.time_signature, m.track, m.transpose_semitones) == (2, (4, 4), "melody", 0)
    assert m.line.dtype == np.int16 and m.line.shape == (32,)
    expected = np.repeat([0, 2, 4, 5, 7, 9, 11, 12], 4) + 60 - 36
    np.testing.assert_array_equal(m.line, expected)
    roll = m.roll(4, 0, 48)
    assert roll.shape == (4, 32, 48) and roll.sum() == 32 and not roll[1:].any()
    assert roll[0, 5, 62 - 36] and m.warnings == []


def test_tail_is_rest_and_default_tempo():
    # mido writes no set_tempo event: MIDI's default 120 qpm. 5 quarter notes -> 2 bars, the rest silent.
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", note=67, velocity=90, time=0))
    track.append(mido.Message("note_off", note=67, velocity=0, time=5 * 480))
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    m = read_melody(buf.getvalue(), DATA, SOPRANO)
    assert m.tempo_qpm == 120.0 and m.n_bars == 2
    assert (m.line[:20] == 67 - 36).all() and (m.line[20:] == -1).all()


def test_top_line_of_chords():
    notes = [(60, 0, 1), (64, 0, 1), (67, 0, 1), (62, 1, 1), (65, 1, 1), (72, 2, 0.5), (60, 2, 2)]
    m = read_melody(melody_file(notes), DATA, SOPRANO)
    line = m.line + 36
    np.testing.assert_array_equal(line[:16], [67] * 4 + [65] * 4 + [72] * 2 + [60] * 6)
    assert "chords" in m.warnings[0]


def test_quantization_rounds_to_nearest_step():
    # A sixteenth is 0.25 beats. Onsets a little early or late land on the nearest step; a tiny note keeps one step.
    notes = [(60, 0.02, 0.95), (62, 0.98, 1.04), (64, 2.1, 0.4), (65, 3.0, 0.05)]
    m = read_melody(melody_file(notes), DATA, SOPRANO)
    # 0.02 -> step 0 (0.08 steps); 0.98 -> 4; 2.1 beats = 8.4 steps -> 8, its end 2.5 beats = step 10;
    # 3.0 beats = step 12 with 0.2 steps of length -> one step. Rests read 35 here (-1 + 36).
    np.testing.assert_array_equal(m.line[:16] + 36, [60] * 4 + [62] * 4 + [64, 64, 35, 35, 65, 35, 35, 35])


def test_track_choice_by_index_name_and_default_skips_drums_and_empty():
    drums = ("Kit", [(36, 0, 1), (38, 1, 1)], True)
    empty = ("Empty", [], False)
    upper = ("Upper", [(72, 0, 4)], False)
    lower = ("Lower Line", [(64, 0, 4)], False)
    unnamed = ("", [(67, 0, 4)], False)
    data = pm_file([drums, empty, upper, lower, unnamed])
    assert read_melody(data, DATA, SOPRANO).track == "Upper"
    assert read_melody(data, DATA, SOPRANO).line[0] == 72 - 36
    by_index = read_melody(data, DATA, SOPRANO, track=1)
    assert (by_index.track, by_index.line[0]) == ("Lower Line", 64 - 36)
    by_name = read_melody(data, DATA, SOPRANO, track="lower line")
    assert (by_name.track, by_name.line[0]) == ("Lower Line", 64 - 36)
    unnamed_track = read_melody(data, DATA, SOPRANO, track=2)
    assert (unnamed_track.track, unnamed_track.line[0]) == ("track 2", 67 - 36)
    with pytest.raises(MidiInputError, match="no track 3.*0: 'Upper', 1: 'Lower Line', 2: 'track 2'"):
        read_melody(data, DATA, SOPRANO, track=3)
    with pytest.raises(MidiInputError, match="no track named 'Kit'.*'Upper'"):
        read_melody(data, DATA, SOPRANO, track="Kit")


def test_transposition_smallest_shift_both_ways():
    above = read_melody(melody_file([(84, 0, 1), (88, 1, 1)]), DATA, SOPRANO)  # C6..E6 -> top must be A5
    assert above.transpose_semitones == 81 - 88
    assert above.line[0] + 36 == 84 - 7 and above.line[4] + 36 == 81
    below = read_melody(melody_file([(50, 0, 1), (55, 1, 1)]), DATA, SOPRANO)  # D3..G3 -> bottom must be C4
    assert below.transpose_semitones == 60 - 50
    assert below.line[0] + 36 == 60
    inside = read_melody(melody_file([(60, 0, 1), (81, 1, 1)]), DATA, SOPRANO)  # exactly the range
    assert inside.transpose_semitones == 0


def test_round_trip_back_to_the_users_key():
    notes = [(86, 0.0, 1.0), (88, 1.0, 0.5), (84, 1.5, 1.5), (91, 3.0, 2.0)]  # D6..G6: needs shifting down
    m = read_melody(melody_file(notes, qpm=100), DATA, SOPRANO)
    assert m.transpose_semitones < 0
    roll = m.roll(4, 0, 48)
    fc = output_feature_config(DATA, m.transpose_semitones)
    assert (fc.pitch_low, fc.pitch_high) == (36 - m.transpose_semitones, 84 - m.transpose_semitones)
    buf = io.BytesIO()
    roll_to_pretty_midi(roll, fc, tempo_qpm=m.tempo_qpm).write(buf)
    back = pretty_midi.PrettyMIDI(io.BytesIO(buf.getvalue()))
    assert back.get_tempo_changes()[1][0] == pytest.approx(100.0)
    got = sorted((n.start * 100 / 60, n.pitch) for n in back.instruments[0].notes)
    assert [p for _, p in got] == [p for p, _, _ in notes]
    np.testing.assert_allclose([b for b, _ in got], [s for _, s, _ in notes], atol=1e-6)


def test_time_signatures():
    assert read_melody(melody_file(SCALE, meters=[(2, 2, 0)]), DATA, SOPRANO).time_signature == (2, 2)
    with pytest.raises(MidiInputError) as e:
        read_melody(melody_file(SCALE, meters=[(3, 4, 0)]), DATA, SOPRANO)
    assert "3/4" in str(e.value) and "4/4" in str(e.value) and "2/2" in str(e.value) and "bar 1" in str(e.value)
    # pretty_midi puts 4/4 at time 0 before a later change; the 6/8 starts bar 3 (quarter note 8).
    with pytest.raises(MidiInputError, match=r"6/8 at bar 3 \(quarter note 8 "):
        read_melody(melody_file(SCALE, meters=[(4, 4, 0), (6, 8, 8)]), DATA, SOPRANO)


def test_not_midi_and_no_notes():
    rng = np.random.default_rng(0)
    for bad, word in [(rng.bytes(300), "MThd"), (b"", "empty"), (b"MThd" + rng.bytes(60), "unreadable")]:
        with pytest.raises(MidiInputError, match="not a readable MIDI file") as e:
            read_melody(bad, DATA, SOPRANO)
        assert word in str(e.value)
    with pytest.raises(MidiInputError, match="no notes"):
        read_melody(pm_file([("Empty", [], False)]), DATA, SOPRANO)
    with pytest.raises(MidiInputError, match="no notes.*drum"):
        read_melody(pm_file([("Kit", [(36, 0, 1)], True)]), DATA, SOPRANO)
    with pytest.raises(MidiInputError, match="no notes"):
        read_piece(pm_file([("Kit", [(36, 0, 1)], True)]), DATA)


def test_span_too_wide_names_both_ranges():
    with pytest.raises(MidiInputError) as e:
        read_melody(melody_file([(55, 0, 1), (84, 1, 1)]), DATA, SOPRANO)  # G3..C6 = 29 semitones
    msg = str(e.value)
    assert "G3..C6 (29 semitones)" in msg and "C4..A5 (21 semitones)" in msg


def test_size_limits(tmp_path):
    long_notes = [(60 + i % 12, 4.0 * i, 4.0) for i in range(9)]  # 9 bars
    with pytest.raises(MidiInputError, match="9 bars long; at most 8 bars"):
        read_melody(melody_file(long_notes), DATA, SOPRANO, max_bars=8)
    assert read_melody(melody_file(long_notes), DATA, SOPRANO, max_bars=9).n_bars == 9
    with pytest.raises(MidiInputError, match="9 bars long; at most 8 bars"):
        read_piece(melody_file(long_notes), DATA, max_bars=8)
    data = melody_file(SCALE)
    with pytest.raises(MidiInputError, match=f"{len(data)} bytes; at most 100 bytes"):
        read_melody(data, DATA, SOPRANO, max_bytes=100)
    path = tmp_path / "melody.mid"
    path.write_bytes(data)
    assert read_melody(path, DATA, SOPRANO).n_bars == 2 and read_melody(str(path), DATA, SOPRANO).n_bars == 2
    with pytest.raises(MidiInputError, match="bytes; at most 100 bytes"):
        read_melody(path, DATA, SOPRANO, max_bytes=100)
    with pytest.raises(MidiInputError, match="no MIDI file at"):
        read_melody(tmp_path / "missing.mid", DATA, SOPRANO)


def test_errors_are_user_errors():
    with pytest.raises(UserError):
        read_melody(b"", DATA, SOPRANO)
    with pytest.raises(ValueError):
        read_melody(b"", DATA, SOPRANO)


SATB = [("S", [(72, 0, 2), (74, 2, 2)], False), ("A", [(67, 0, 4)], False),
        ("T", [(64, 0, 2), (62, 2, 2)], False), ("B", [(48, 0, 4)], False)]


def test_read_piece_four_tracks():
    p = read_piece(pm_file(SATB, qpm=80), DATA)
    assert p.roll.shape == (4, 16, 48) and p.present == [True] * 4 and p.warnings == []
    assert (p.transpose_semitones, p.n_bars, p.time_signature, p.tempo_qpm) == (0, 1, (4, 4), pytest.approx(80))
    assert p.roll.sum(axis=2).max() == 1  # monophonic
    assert p.roll[0, 0, 72 - 36] and p.roll[0, 8, 74 - 36] and p.roll[2, 8, 62 - 36] and p.roll[3, 7, 48 - 36]
    assert not p.roll[:, 16:].any() and p.roll.sum() == 4 * 8 * 2


def test_read_piece_five_tracks_and_missing_and_transposed():
    p = read_piece(pm_file(SATB + [("Continuo", [(40, 0, 4)], False)]), DATA)
    assert p.present == [True] * 4 and p.roll[3, 0, 48 - 36]
    assert len(p.warnings) == 1 and "'Continuo'" in p.warnings[0] and "ignored" in p.warnings[0]
    three = read_piece(pm_file(SATB[:3]), DATA)
    assert three.present == [True, True, True, False] and not three.roll[3].any()
    # Bass at B1 (35) lies one below the model's range: the whole piece moves up one semitone.
    low = read_piece(pm_file(SATB[:3] + [("B", [(35, 0, 4)], False)]), DATA)
    assert low.transpose_semitones == 1 and low.roll[3, 0, 0] and low.roll[0, 0, 73 - 36]
    with pytest.raises(MidiInputError, match=r"C1..D5 \(50 semitones\).*C2..B5 \(47 semitones\)"):
        read_piece(pm_file(SATB[:3] + [("B", [(24, 0, 4)], False), ("X", [], False)]), DATA)


def test_read_piece_chords_keep_top_notes():
    p = read_piece(pm_file([("S", [(72, 0, 4), (76, 0, 4)], False)]), DATA)
    assert p.roll[0, :, 76 - 36].sum() == 16 and p.roll[0].sum() == 16 and "chords" in p.warnings[0]


def test_melody_from_notes_equals_read_melody():
    notes = [(60, 0.0, 1.0), (64, 0.0, 1.0), (62, 1.02, 0.98), (67, 2.5, 0.5), (59, 3.0, 3.0), (76, 8.0, 1.0)]
    from_midi = read_melody(melody_file(notes, qpm=90), DATA, (60, 83))
    from_json = melody_from_notes([{"pitch": p, "start_beat": s, "duration_beats": d} for p, s, d in notes],
                                  DATA, (60, 83))
    np.testing.assert_array_equal(from_json.line, from_midi.line)
    assert from_json.line.dtype == np.int16
    assert (from_json.transpose_semitones, from_json.n_bars, from_json.tempo_qpm) == (
        from_midi.transpose_semitones, from_midi.n_bars, pytest.approx(from_midi.tempo_qpm))
    assert from_json.transpose_semitones == 1  # B3 (59) needs one semitone up into C4..B5


def test_piece_from_notes_matches_read_piece():
    voices = [[{"pitch": p, "start_beat": s, "duration_beats": d} for p, s, d in notes] for _, notes, _ in SATB]
    p = piece_from_notes(voices, DATA, tempo_qpm=80)
    q = read_piece(pm_file(SATB, qpm=80), DATA)
    np.testing.assert_array_equal(p.roll, q.roll)
    assert p.tempo_qpm == 80.0 and p.present == q.present
    partial = piece_from_notes([voices[0], [], [], voices[3]], DATA)
    assert partial.present == [True, False, False, True]


@pytest.mark.parametrize("note, problem", [
    ({"pitch": 130, "start_beat": 0, "duration_beats": 1}, "pitch must be an integer MIDI pitch 0..127, not 130"),
    ({"pitch": 60.5, "start_beat": 0, "duration_beats": 1}, "pitch must be an integer"),
    ({"pitch": True, "start_beat": 0, "duration_beats": 1}, "pitch must be an integer"),
    ({"pitch": 60, "start_beat": -1, "duration_beats": 1}, "start_beat must be a number >= 0"),
    ({"pitch": 60, "start_beat": "0", "duration_beats": 1}, "start_beat must be a number >= 0"),
    ({"pitch": 60, "start_beat": 0, "duration_beats": 0}, "duration_beats must be a number > 0"),
    ({"pitch": 60, "start_beat": 0, "duration_beats": float("nan")}, "duration_beats must be a number > 0"),
    ({"pitch": 60, "start_beat": 0}, "missing duration_beats"),
    ([60, 0, 1], "must be an object"),
])
def test_note_list_validation(note, problem):
    good = {"pitch": 62, "start_beat": 0, "duration_beats": 1}
    with pytest.raises(MidiInputError, match="note 1: " + problem.replace("(", r"\(").replace(")", r"\)")):
        melody_from_notes([good, note], DATA, SOPRANO)


def test_note_list_limits():
    with pytest.raises(MidiInputError, match="no notes"):
        melody_from_notes([], DATA, SOPRANO)
    with pytest.raises(MidiInputError, match="tempo_qpm"):
        melody_from_notes([{"pitch": 60, "start_beat": 0, "duration_beats": 1}], DATA, SOPRANO, tempo_qpm=0)
    with pytest.raises(MidiInputError, match="65 bars long; at most 64"):
        melody_from_notes([{"pitch": 60, "start_beat": 256, "duration_beats": 1}], DATA, SOPRANO)
    with pytest.raises(MidiInputError, match="no notes"):
        piece_from_notes([[], []], DATA)


def test_midi_factory_file_reads():
    """A file written by the shared test factory (mido, tpq 480), with a held note under a moving top."""
    data = midi_bytes([[(0, 960, 72), (960, 1920, 74), (0, 1920, 60)]])
    m = read_melody(data, DATA, SOPRANO)
    np.testing.assert_array_equal(m.line[:16] + 36, [72] * 8 + [74] * 8)


def test_melody_too_far_to_shift_back_into_midi():
    # G#8..G9 would need -46 semitones into C4..A5; the model's top pitch (B5) would then come back above G9.
    with pytest.raises(MidiInputError, match="MIDI's pitches 0..127"):
        read_melody(melody_file([(116, 0, 1), (127, 1, 1)]), DATA, SOPRANO)
    assert read_melody(melody_file([(96, 0, 1), (107, 1, 1)]), DATA, SOPRANO).transpose_semitones == -26
