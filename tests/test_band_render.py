"""A band (``track_mode="program"``) rendered and measured: General MIDI programs and drums on
channel 10 read back with pretty_midi and mido; the drum-pattern rate on hand-built drum rolls with
known answers; tonal metrics that skip the drum track."""

from __future__ import annotations

import io

import mido
import numpy as np
import pretty_midi
import pytest

from musicgan import metrics as M
from musicgan.config import BAND_TRACKS, FeatureConfig, to_dict
from musicgan.data.pianoroll import midi_to_phrases, roll_to_midi_bytes, roll_to_pretty_midi
from musicgan.render import midi_bytes, to_midi

STEPS, PITCHES, LOW = 64, 48, 36
DRUMS, PIANO, GUITAR, BASS, STRINGS = range(5)
KICK, SNARE, CLOSED_HAT = 36, 38, 42
DRUM_CHANNEL = 9  # channel 10, counted from 0 as MIDI bytes do


def band_fc() -> FeatureConfig:
    return FeatureConfig(track_names=list(BAND_TRACKS), track_mode="program").validate()


def band_data(fc: FeatureConfig | None = None) -> dict:
    fc = fc or band_fc()
    return {"feature_config": to_dict(fc), "steps_per_bar": fc.steps_per_bar, "pitch_low": fc.pitch_low,
            "track_names": fc.track_names}


def band_roll() -> np.ndarray:
    """``[5, 64, 48]``: a hi-hat on every sixteenth, kick on beats, snare on 2 and 4; a held C major
    chord on piano, a G chord strummed on guitar, a bass line, a held string note."""
    roll = np.zeros((5, STEPS, PITCHES), bool)
    roll[DRUMS, :, CLOSED_HAT - LOW] = True
    roll[DRUMS, ::4, KICK - LOW] = True
    roll[DRUMS, 4::8, SNARE - LOW] = True
    roll[PIANO, :, [60 - LOW, 64 - LOW, 67 - LOW]] = True
    for s in range(0, STEPS, 8):
        roll[GUITAR, s : s + 4, [55 - LOW, 59 - LOW, 62 - LOW]] = True
    roll[BASS, :32, 40 - LOW] = True
    roll[BASS, 32:, 43 - LOW] = True
    roll[STRINGS, :, 72 - LOW] = True
    return roll


def read_back(midi) -> pretty_midi.PrettyMIDI:
    if isinstance(midi, pretty_midi.PrettyMIDI):
        buf = io.BytesIO()
        midi.write(buf)
        midi = buf.getvalue()
    return pretty_midi.PrettyMIDI(io.BytesIO(midi))


def note_channels(data: bytes) -> dict[str, set[int]]:
    """Per track name: the channels its notes are played on (mido, straight from the bytes)."""
    out: dict[str, set[int]] = {}
    for track in mido.MidiFile(file=io.BytesIO(data)).tracks:
        name = next((msg.name for msg in track if msg.type == "track_name"), "")
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                out.setdefault(name, set()).add(msg.channel)
    return out


def file_bytes(midi) -> bytes:
    if isinstance(midi, pretty_midi.PrettyMIDI):
        buf = io.BytesIO()
        midi.write(buf)
        return buf.getvalue()
    return midi


# --- render ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("render", ["pretty_midi", "symusic", "render.to_midi", "render.midi_bytes"])
def test_band_tracks_get_general_midi_programs_and_drums_channel_10(render):
    fc, roll = band_fc(), band_roll()
    midi = {"pretty_midi": lambda: roll_to_pretty_midi(roll, fc), "symusic": lambda: roll_to_midi_bytes(roll, fc),
            "render.to_midi": lambda: to_midi(roll, band_data()),
            "render.midi_bytes": lambda: midi_bytes(roll, band_data())}[render]()
    pm = read_back(midi)
    by_name = {inst.name: inst for inst in pm.instruments}
    assert set(by_name) == set(BAND_TRACKS)
    assert [(by_name[n].program, by_name[n].is_drum) for n in BAND_TRACKS] == [
        (0, True), (0, False), (25, False), (33, False), (48, False)]
    channels = note_channels(file_bytes(midi))
    assert channels["drums"] == {DRUM_CHANNEL}
    assert set(channels) == set(BAND_TRACKS)
    assert all(DRUM_CHANNEL not in channels[name] for name in BAND_TRACKS[1:])
    drum_pitches = sorted({n.pitch for n in by_name["drums"].notes})
    assert drum_pitches == [KICK, SNARE, CLOSED_HAT]


def test_every_drum_cell_is_its_own_hit():
    fc, roll = band_fc(), band_roll()
    drums = next(i for i in read_back(roll_to_midi_bytes(roll, fc)).instruments if i.is_drum)
    hats = sorted(n.start for n in drums.notes if n.pitch == CLOSED_HAT)
    assert len(hats) == STEPS  # 64 consecutive cells: 64 hits, not one long note
    step_s = 60.0 / 100.0 / 4  # roll_to_midi_bytes's default tempo, 100 qpm
    np.testing.assert_allclose(hats, np.arange(STEPS) * step_s, atol=1e-3)
    assert sum(n.pitch == KICK for n in drums.notes) == STEPS // 4
    piano = next(i for i in read_back(roll_to_midi_bytes(roll, fc)).instruments if i.name == "piano")
    assert len(piano.notes) == 3  # a held chord stays three long notes


def test_a_rendered_band_reads_back_as_the_same_roll():
    fc, roll = band_fc(), band_roll()
    for midi in (roll_to_midi_bytes(roll, fc), file_bytes(roll_to_pretty_midi(roll, fc))):
        r = midi_to_phrases(midi, fc)
        assert len(r.phrases) == 1
        np.testing.assert_array_equal(r.phrases[0].transpose(1, 0, 2), roll)


def test_the_four_voice_layout_renders_as_before():
    fc = FeatureConfig().validate()
    roll = np.zeros((4, STEPS, PITCHES), bool)
    roll[0, :16, 72 - LOW] = roll[1, :, 67 - LOW] = roll[2, :, 64 - LOW] = roll[3, :8, 48 - LOW] = True
    for midi in (roll_to_pretty_midi(roll, fc), roll_to_midi_bytes(roll, fc)):
        pm = read_back(midi)
        assert [(i.name, i.program, i.is_drum) for i in pm.instruments] == [
            (n, 52, False) for n in ("soprano", "alto", "tenor", "bass")]
        assert DRUM_CHANNEL not in {c for cs in note_channels(file_bytes(midi)).values() for c in cs}
    # the same track names without program mode are voices, not a band
    plain = FeatureConfig(track_names=list(BAND_TRACKS)).validate()
    pm = read_back(roll_to_midi_bytes(band_roll(), plain))
    assert {(i.program, i.is_drum) for i in pm.instruments} == {(52, False)}


def test_explicit_programs_still_win():
    pm = read_back(roll_to_midi_bytes(band_roll(), band_fc(), programs=[40]))
    assert {(i.program, i.is_drum) for i in pm.instruments} == {(40, False)}


# --- the drum-pattern rate ------------------------------------------------------------------------


def drum_rolls(steps_per_bar: int, hits: list[tuple[int, int]], bars: int = 1) -> np.ndarray:
    """``[1, steps, pitches]`` drum roll with a cell at each ``(step, pitch index)``."""
    roll = np.zeros((1, steps_per_bar * bars, PITCHES), bool)
    for s, p in hits:
        roll[0, s, p] = True
    return roll


def test_drum_pattern_mask_matches_musegans_tables():
    tol = 0.1  # MuseGAN's masks, per 4/4 bar of n steps (musegan metrics: drum_in_pattern_rate)
    expected = {16: np.tile([1, tol], 8), 24: np.tile([1, tol, tol], 8), 32: np.tile([1, tol], 16),
                48: np.tile([1, tol, tol], 16), 64: np.tile([1, tol, 0, tol], 16),
                96: np.tile([1, tol, 0, 0, 0, tol], 16)}
    for steps_per_bar, mask in expected.items():
        np.testing.assert_allclose(M.drum_pattern_mask(steps_per_bar), mask, err_msg=str(steps_per_bar))
    np.testing.assert_allclose(M.drum_pattern_mask(8), np.ones(8))  # eighth-note grid: every step on it
    np.testing.assert_allclose(M.drum_pattern_mask(12), np.tile([1, tol, tol], 4))  # quarters (our extension)
    with pytest.raises(ValueError, match="multiple of 4"):
        M.drum_pattern_mask(10)


@pytest.mark.parametrize("steps_per_bar,hits,rate", [
    (16, [(s, 0) for s in range(0, 16, 2)], 1.0),  # straight eighths
    (16, [(s, 0) for s in range(1, 16, 2)], 0.1),  # only off-beat sixteenths
    (16, [(s, 0) for s in range(16)], 0.55),  # every sixteenth: 8 x 1 + 8 x 0.1 over 16
    (16, [(0, 0), (0, 6), (1, 0)], (1 + 1 + 0.1) / 3),  # two drums at once count as two notes
    (16, [], 0.0),
    (32, [(s, 0) for s in range(0, 32, 2)], 1.0),  # sixteenths on a 32-step grid
    (32, [(3, 0)], 0.1),
    (64, [(2, 0), (4, 0)], 0.5),  # halfway between sixteenths counts 0, on one counts 1
    (96, [(0, 0), (1, 0), (3, 0), (5, 0)], (1 + 0.1 + 0 + 0.1) / 4),
])
def test_drum_pattern_rate_known_answers(steps_per_bar, hits, rate):
    assert M.drum_pattern_rate(drum_rolls(steps_per_bar, hits), steps_per_bar) == pytest.approx(rate)


def test_drum_pattern_rate_reads_positions_per_bar_over_phrases():
    # bar 1 on the grid, bar 2 off it, in the second of two phrases; the first phrase is silent
    rolls = np.zeros((2, 32, PITCHES), bool)
    rolls[1, [0, 4, 8], 0] = True
    rolls[1, [17, 19], 0] = True
    assert M.drum_pattern_rate(rolls, 16) == pytest.approx((3 + 0.2) / 5)


# --- tonal metrics skip the drums -------------------------------------------------------------------


def chromatic_drums(rolls: np.ndarray) -> np.ndarray:
    """Drum cells on twelve consecutive pitches (every pitch class) at every eighth, and nothing else."""
    rolls = rolls.copy()
    rolls[:, DRUMS] = False
    rolls[:, DRUMS, ::2, 0:12] = True
    return rolls


def test_tonal_metrics_skip_the_drum_track():
    rolls = band_roll()[None].repeat(3, 0)
    loud = chromatic_drums(rolls)
    quiet = rolls.copy()
    quiet[:, DRUMS] = False
    names = list(BAND_TRACKS)
    m_loud, m_quiet = M.phrase_metrics(loud, 16, LOW, names), M.phrase_metrics(quiet, 16, LOW, names)
    for key in ("UPC", "QN", "polyphony", "pitch_range", "in_scale", "TD"):
        assert m_loud[key] == m_quiet[key], key
    assert m_loud["in_scale"] == 1.0  # C major chord, G chord, E/G bass, C strings; the drums would break it
    assert M.in_scale_rate(loud, LOW) < 1.0
    assert not any(k.endswith("/drums") for k in m_loud if not k.startswith("EB/"))
    assert not any("drums" in k for k in m_loud if k.startswith("TD/"))
    assert "TD/piano-guitar" in m_loud and m_loud["EB/drums"] == 0.0 and m_quiet["EB/drums"] == 1.0
    assert m_loud["DP"] == pytest.approx(1.0)  # every drum cell on an eighth
    assert m_quiet["DP"] == 0.0
    assert "DP" not in M.phrase_metrics(rolls[:, 1:], 16, LOW, names[1:])  # no drum track, no DP


def test_voice_measures_and_vertical_distance_skip_the_drum_track():
    rolls = band_roll()[None].repeat(3, 0)
    loud = chromatic_drums(rolls)
    names = list(BAND_TRACKS)
    v_loud, v_pitched = M.voice_metrics(loud, 16, names), M.voice_metrics(rolls[:, 1:], 16, names[1:])
    assert v_loud == v_pitched
    assert M.vertical_interval_distance(loud, rolls, 16, names) == 0.0
    assert M.vertical_interval_distance(loud, rolls, 16) > 0.0  # without track names the drums count


def test_fmd_vector_skips_drum_pitches_and_adds_the_drum_pattern_rate():
    rolls = band_roll()[None].repeat(3, 0)
    loud = chromatic_drums(rolls)
    names = list(BAND_TRACKS)
    v_loud, v_band = M.statistics_vector(loud, 16, LOW, names), M.statistics_vector(rolls, 16, LOW, names)
    assert v_loud.shape == (3, 12 + 25 + 6 * 5 + 1 + 1)
    np.testing.assert_allclose(v_loud[:, :37], v_band[:, :37])  # pitch classes and intervals: no drums
    np.testing.assert_allclose(v_loud[:, -2], v_band[:, -2])  # polyphony
    np.testing.assert_allclose(v_loud[:, -1], 1.0)  # DP of eighths
    # 64 hats (32 on eighths, 32 off), 16 kicks and 8 snares on eighths
    np.testing.assert_allclose(v_band[:, -1], (32 + 16 + 8 + 0.1 * 32) / 88)
    assert M.statistics_vector(loud, 16, LOW).shape == (3, 12 + 25 + 6 * 5 + 1)  # without names: as before
    cmp = M.compare(loud, rolls, rolls, 16, LOW, names)
    assert cmp["generated"]["DP"] == pytest.approx(1.0) and cmp["real"]["DP"] == pytest.approx(59.2 / 88)
