"""Band tracks (``track_mode="program"``) from MIDI files the tests write with pretty_midi: every
General MIDI family to its LPD-5 track, drums kept with their pitches, chords kept, merges, drops."""

from __future__ import annotations

import io

import numpy as np
import pretty_midi
import pytest

from musicgan.config import BAND_TRACKS, ConfigError, FeatureConfig
from musicgan.data.pianoroll import (GM_PROGRAM_TRACK, BadInput, band_track, midi_to_phrases,
                                     pianoroll_of_file)
from musicgan.errors import UserError

TEMPO_QPM = 120.0
STEP_S = 60.0 / TEMPO_QPM / 4  # a sixteenth at 16 steps per bar; pretty_midi's 220 ticks/quarter divide it
PHRASE_STEPS = 64
LOW = 36  # FeatureConfig's default pitch_low


def band_fc(**kw) -> FeatureConfig:
    kw.setdefault("track_names", list(BAND_TRACKS))
    return FeatureConfig(track_mode="program", **kw).validate()


def band_midi(*instruments) -> bytes:
    """``instruments``: ``(program, is_drum, [(pitch, start_step, end_step), ...])``; an end of None
    makes a drum hit a fiftieth of a second long, shorter than a step (as drum parts often are)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=TEMPO_QPM)
    for program, is_drum, notes in instruments:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
        for pitch, start, end in notes:
            end_s = start * STEP_S + 0.02 if end is None else end * STEP_S
            inst.notes.append(pretty_midi.Note(90, pitch, start * STEP_S, end_s))
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def held(pitch: int, steps: int = PHRASE_STEPS) -> list:
    return [(pitch, 0, steps)]


def tracks_playing(roll: np.ndarray, pitch: int) -> list[str]:
    """Names of the band tracks in which ``pitch`` sounds anywhere."""
    return [BAND_TRACKS[t] for t in range(roll.shape[0]) if roll[t, :, pitch - LOW].any()]


# --- the program table -------------------------------------------------------------------------


def lpd5_track(program: int) -> str | None:
    """LPD-5's rule as its merge script writes it (program // 8 families; strings takes the rest
    below 96 and 104..111)."""
    family = program // 8
    if family == 0:
        return "piano"
    if family == 3:
        return "guitar"
    if family == 4:
        return "bass"
    if program < 96 or 104 <= program < 112:
        return "strings"
    return None


def test_program_table_is_lpd5_for_all_128_programs():
    assert len(GM_PROGRAM_TRACK) == 128
    assert [GM_PROGRAM_TRACK[p] for p in range(128)] == [lpd5_track(p) for p in range(128)]
    assert band_track(25, is_drum=True) == "drums"  # a drum channel is drums whatever its program


@pytest.mark.parametrize("program,track", [
    (0, "piano"), (4, "piano"), (7, "piano"),
    (24, "guitar"), (29, "guitar"), (31, "guitar"),
    (32, "bass"), (33, "bass"), (39, "bass"),
    (40, "strings"), (48, "strings"), (55, "strings"),
    (8, "strings"), (16, "strings"),  # chromatic percussion, organ
    (56, "strings"), (65, "strings"), (73, "strings"), (81, "strings"), (95, "strings"),  # brass .. pad
    (104, "strings"), (111, "strings"),  # ethnic
    (96, None), (103, None), (112, None), (118, None), (127, None),  # synth effects, percussive, effects
])
def test_each_program_family_lands_on_its_track(program, track):
    probe, anchor = 60, 48  # the probe instrument's note, and a bass note so no file is note-less
    roll = pianoroll_of_file(band_midi((program, False, held(probe)), (34, False, held(anchor))), band_fc())
    assert roll.shape == (5, PHRASE_STEPS, 48)
    assert tracks_playing(roll, probe) == ([track] if track else [])
    assert tracks_playing(roll, anchor) == ["bass"]


# --- drums ---------------------------------------------------------------------------------------


KICK, SNARE, CLOSED_HAT, RIDE = 36, 38, 42, 51


def four_on_the_floor(program: int = 0) -> tuple:
    hits = ([(KICK, s, None) for s in range(0, PHRASE_STEPS, 4)] + [(SNARE, s, None) for s in range(4, PHRASE_STEPS, 8)]
            + [(CLOSED_HAT, s, None) for s in range(0, PHRASE_STEPS, 2)] + [(RIDE, 5, 12)])
    return (program, True, hits)


def test_drums_keep_their_pitches_one_step_per_hit():
    roll = pianoroll_of_file(band_midi(four_on_the_floor(), (0, False, held(60))), band_fc())
    drums = roll[BAND_TRACKS.index("drums")]
    assert np.nonzero(drums.any(0))[0].tolist() == [p - LOW for p in (KICK, SNARE, CLOSED_HAT, RIDE)]
    # hits shorter than a step are kept at their onset step (the floor rule would drop them) ...
    assert np.nonzero(drums[:, KICK - LOW])[0].tolist() == list(range(0, PHRASE_STEPS, 4))
    assert np.nonzero(drums[:, SNARE - LOW])[0].tolist() == list(range(4, PHRASE_STEPS, 8))
    assert np.nonzero(drums[:, CLOSED_HAT - LOW])[0].tolist() == list(range(0, PHRASE_STEPS, 2))
    # ... and a long one fills its onset step only: drums are one-shots
    assert np.nonzero(drums[:, RIDE - LOW])[0].tolist() == [5]
    assert tracks_playing(roll, KICK) == ["drums"]  # no drum note leaks into a pitched track


def test_a_drum_channel_is_drums_whatever_its_program():
    roll = pianoroll_of_file(band_midi(four_on_the_floor(program=33), (0, False, held(60))), band_fc())
    assert tracks_playing(roll, KICK) == ["drums"]
    assert not roll[BAND_TRACKS.index("bass")].any()


def test_notes_on_channel_10_are_drums_even_after_a_bass_program_change():
    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.Message("program_change", channel=9, program=33, time=0))
    for s in range(0, PHRASE_STEPS, 4):
        track.append(mido.Message("note_on", channel=9, note=KICK, velocity=90, time=0 if s == 0 else 120 * 3))
        track.append(mido.Message("note_off", channel=9, note=KICK, velocity=0, time=120))
    piano = mido.MidiTrack([mido.Message("note_on", channel=0, note=60, velocity=90, time=0),
                            mido.Message("note_off", channel=0, note=60, velocity=0, time=120 * PHRASE_STEPS)])
    mid.tracks += [track, piano]
    buf = io.BytesIO()
    mid.save(file=buf)
    roll = pianoroll_of_file(buf.getvalue(), band_fc())
    assert tracks_playing(roll, KICK) == ["drums"]
    assert np.nonzero(roll[0, :, KICK - LOW])[0].tolist() == list(range(0, PHRASE_STEPS, 4))
    assert tracks_playing(roll, 60) == ["piano"]


def test_index_mode_still_drops_drums():
    fc = FeatureConfig(track_names=["a", "b"]).validate()
    roll = pianoroll_of_file(band_midi(four_on_the_floor(), (0, False, held(60))), fc)
    assert roll[0, :, 60 - LOW].all() and not roll[1].any()
    assert not roll[:, :, KICK - LOW].any()


def test_transposition_shifts_the_pitched_tracks_never_the_drums():
    fc = band_fc(transpose=[-2, 0, 3])
    data = band_midi(four_on_the_floor(), (0, False, held(60)), (33, False, held(45)))
    r = midi_to_phrases(data, fc)
    assert sorted(r.transposes.tolist()) == [-2, 0, 3]
    phrases = r.phrases.transpose(0, 2, 1, 3)  # [N, tracks, steps, pitches]
    reference = pianoroll_of_file(data, fc)[0]
    assert reference[:, KICK - LOW].sum() == PHRASE_STEPS // 4
    for roll, shift in zip(phrases, r.transposes):
        np.testing.assert_array_equal(roll[0], reference)  # the drums, as played
        assert tracks_playing(roll, 60 + shift) == ["piano"]
        assert tracks_playing(roll, 45 + shift) == ["bass"]


def test_drum_hits_outside_the_range_are_left_out_with_a_warning_and_the_phrase_kept():
    acoustic_bass_drum = 35  # below the default pitch_low 36
    drums = (0, True, [(acoustic_bass_drum, s, None) for s in range(0, PHRASE_STEPS, 4)] + [(SNARE, 4, None)])
    r = midi_to_phrases(band_midi(drums, (0, False, held(60))), band_fc())
    assert len(r.phrases) == 1
    assert r.drum_hits_out_of_range == 16
    assert any("16 drum hits outside the pitch range 36:84" in w for w in r.warnings)
    drum_roll = r.phrases[0][:, BAND_TRACKS.index("drums")]  # [steps, pitches]
    assert np.argwhere(drum_roll).tolist() == [[4, SNARE - LOW]]
    # a pitched note out of range still drops its phrase, as in the other modes
    r = midi_to_phrases(band_midi((0, False, held(60) + [(30, 0, 4)])), band_fc())
    assert len(r.phrases) == 0 and r.phrases_out_of_range == 1


def test_drums_count_as_sounding_for_the_density_rule():
    groove = (0, True, [(CLOSED_HAT, s, None) for s in range(PHRASE_STEPS)])
    bass = (33, False, [(40, 0, 4), (40, 60, 64)])
    r = midi_to_phrases(band_midi(groove, bass), band_fc())
    assert len(r.phrases) == 1  # the bass alone sounds 8 of 64 steps: too sparse without the drums
    r = midi_to_phrases(band_midi(groove, bass), band_fc(track_names=["bass"]))
    assert len(r.phrases) == 0 and r.phrases_too_sparse == 1


# --- chords, merges, chosen tracks ---------------------------------------------------------------


def test_piano_and_guitar_keep_their_chords():
    c_major, g_major = [60, 64, 67], [55, 59, 62, 67]
    piano = (0, False, [(p, 0, PHRASE_STEPS) for p in c_major])
    guitar = (25, False, [(p, s, s + 2) for s in range(0, PHRASE_STEPS, 4) for p in g_major])
    r = midi_to_phrases(band_midi(piano, guitar), band_fc())
    roll = r.phrases[0].transpose(1, 0, 2)
    piano_roll, guitar_roll = roll[BAND_TRACKS.index("piano")], roll[BAND_TRACKS.index("guitar")]
    assert all(np.nonzero(piano_roll[s])[0].tolist() == [p - LOW for p in c_major] for s in range(PHRASE_STEPS))
    strums = [s for s in range(PHRASE_STEPS) if guitar_roll[s].any()]
    assert strums == [s for s in range(PHRASE_STEPS) if s % 4 < 2]
    assert all(np.nonzero(guitar_roll[s])[0].tolist() == [p - LOW for p in g_major] for s in strums)


def test_two_pianos_merge_into_the_piano_track():
    grand = (0, False, [(60, 0, 32), (72, 0, PHRASE_STEPS)])
    electric = (4, False, [(64, 16, PHRASE_STEPS), (72, 8, 40)])  # 72 overlaps the grand's: one union
    roll = pianoroll_of_file(band_midi(grand, electric), band_fc())
    piano = roll[BAND_TRACKS.index("piano")]
    assert np.nonzero(piano[:, 60 - LOW])[0].tolist() == list(range(0, 32))
    assert np.nonzero(piano[:, 64 - LOW])[0].tolist() == list(range(16, PHRASE_STEPS))
    assert piano[:, 72 - LOW].all()
    assert roll.sum() == piano.sum() == 32 + 48 + 64


def test_several_other_instruments_merge_into_strings():
    roll = pianoroll_of_file(band_midi((48, False, held(67)), (56, False, held(70)), (73, False, held(79)),
                                       (33, False, held(40))), band_fc())
    assert tracks_playing(roll, 67) == tracks_playing(roll, 70) == tracks_playing(roll, 79) == ["strings"]


def test_named_tracks_choose_the_order_and_drop_the_other_families():
    fc = band_fc(track_names=["bass", "piano"])
    roll = pianoroll_of_file(band_midi(four_on_the_floor(), (0, False, held(60)), (33, False, held(40)),
                                       (25, False, held(64)), (48, False, held(67))), fc)
    assert roll.shape[0] == 2
    assert roll[0, :, 40 - LOW].all() and roll[0].sum() == PHRASE_STEPS  # bass only
    assert roll[1, :, 60 - LOW].all() and roll[1].sum() == PHRASE_STEPS  # piano only: drums, guitar, strings gone


def test_a_file_with_no_band_instrument_is_bad_input():
    with pytest.raises(BadInput, match="no notes in the band's instrument families"):
        midi_to_phrases(band_midi((120, False, held(60)), (98, False, held(62))), band_fc())
    with pytest.raises(BadInput, match="no notes"):  # drums only, but the build has no drum track
        midi_to_phrases(band_midi(four_on_the_floor()), band_fc(track_names=["piano", "bass"]))


def test_a_drums_only_file_makes_drum_phrases():
    r = midi_to_phrases(band_midi((0, True, [(CLOSED_HAT, s, None) for s in range(PHRASE_STEPS)])), band_fc())
    assert len(r.phrases) == 1
    assert r.phrases[0].sum() == PHRASE_STEPS and r.phrases[0][:, 0, CLOSED_HAT - LOW].all()


# --- config ---------------------------------------------------------------------------------------


def test_program_mode_needs_band_track_names():
    assert band_fc().track_names == ["drums", "piano", "guitar", "bass", "strings"]
    for names in (["soprano", "alto", "tenor", "bass"], ["piano", "piano"], ["drums", "keys"]):
        with pytest.raises(ConfigError, match="band tracks") as e:
            FeatureConfig(track_mode="program", track_names=names).validate()
        assert isinstance(e.value, UserError)
    with pytest.raises(ConfigError, match="'index', 'merge' or 'program'"):
        FeatureConfig(track_mode="family").validate()


def test_band_build_feature_hash_differs_from_index_mode():
    assert band_fc().hash() != FeatureConfig(track_names=list(BAND_TRACKS)).validate().hash()
