"""The ingest hot path reads symusic's pickles instead of its Python objects: the whole score in one
walk (``musicgan.data.pianoroll._score_state_to_phrases``) for the usual file, else each track's note
list (``_gather_note_states``) instead of ``notes.numpy()``, and the meta lists. Each must give
exactly what the plain path gives, and fall back to it when the bytes are not the layout it knows."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Note, Score, Track

from musicgan.config import FeatureConfig
from musicgan.data import pianoroll
from musicgan.data.pianoroll import BadInput, midi_to_phrases
from tests.midi_factory import midi_bytes

TPQ = 480
STEP = TPQ // 4


def _score_bytes(tracks: list[tuple[bool, list[tuple[int, int, int]]]], tpq: int = TPQ) -> bytes:
    """``tracks``: ``(is_drum, [(start_tick, end_tick, pitch), ...])`` each; a track may be empty."""
    score = Score(tpq)
    for is_drum, notes in tracks:
        track = Track(program=0, is_drum=is_drum)
        for start, end, pitch in notes:
            track.notes.append(Note(start, end - start, pitch, 90))
        score.tracks.append(track)
    return score.dumps_midi()


def _fields(r) -> tuple:
    return (r.phrases.shape, r.phrases.tobytes(), r.start_bars.dtype, r.start_bars.tolist(), r.transposes.dtype,
            r.transposes.tolist(), r.n_steps, r.phrases_out_of_range, r.phrases_too_sparse, r.warnings)


def _both_paths(data: bytes, fc: FeatureConfig, monkeypatch) -> tuple:
    """midi_to_phrases through the pickled notes, then through notes.numpy() (the whole-score walk
    off in both); errors compare as text."""
    out = []
    monkeypatch.setattr(pianoroll, "_score_states", False)
    for use_states in (True, False):
        monkeypatch.setattr(pianoroll, "_note_states", use_states)
        try:
            out.append(_fields(midi_to_phrases(data, fc)))
        except BadInput as e:
            out.append(("BadInput", str(e)))
    return tuple(out)


def _chorale(bars: int, voices: int) -> list[list[tuple[int, int, int]]]:
    """``voices`` tracks of quarter notes, each voice its own pitch walk (known, varied contents)."""
    return [[(q * 4 * STEP, (q + 1) * 4 * STEP, 48 + 7 * v + (q * (v + 1)) % 11) for q in range(4 * bars)]
            for v in range(voices)]


def test_the_installed_symusic_pickles_notes_in_the_layout_decoded():
    # If this fails after a symusic upgrade, ingest still works (the numpy() path) but loses its speed.
    assert pianoroll._note_state_layout_ok()


def test_decoder_reads_known_notes_and_refuses_a_buffer_that_is_not_whole_records():
    from symusic.core import NoteTickList

    notes = NoteTickList.from_numpy(np.array([0, 960, -5], np.int32), np.array([480, 123_456, 1], np.int32),
                                    np.array([36, 83, 0], np.int8), np.array([1, 2, 3], np.int8))
    buf = np.frombuffer(notes.__getstate__(), np.uint8)
    time, duration, pitch, ok = pianoroll._decode_note_states(buf, 3)
    assert ok
    assert time.tolist() == [0, 960, -5] and duration.tolist() == [480, 123_456, 1] and pitch.tolist() == [36, 83, 0]
    assert not pianoroll._decode_note_states(buf[:-1], 3)[3]  # a record cut short
    assert not pianoroll._decode_note_states(buf, 2)[3]  # more notes than the caller counted
    assert not pianoroll._decode_note_states(np.concatenate([buf, buf[:2]]), 3)[3]  # trailing bytes


@pytest.mark.parametrize("fc", [
    FeatureConfig(),
    FeatureConfig(track_names=["all"], track_mode="merge"),
    FeatureConfig(track_names=["a", "b"]),  # fewer output tracks than voices: the extra voices are ignored
    FeatureConfig(transpose=[-2, 0, 3], min_active_fraction=0.9),
    FeatureConfig(bars=2, hop_bars=2, pitch_low=50, pitch_high=70),
], ids=["default", "merge", "two-tracks", "transposed", "narrow"])
def test_pickled_notes_and_numpy_give_the_same_phrases(fc, monkeypatch):
    files = [
        midi_bytes(_chorale(9, 4)),
        midi_bytes(_chorale(5, 3) + [[]]),  # an empty track
        midi_bytes(_chorale(2, 4)),  # shorter than a phrase at bars=4
        midi_bytes(_chorale(6, 4), tpq=96),
        _score_bytes([(False, n) for n in _chorale(6, 2)[:1]] + [(True, [(0, STEP, 36), (STEP, 2 * STEP, 38)])]
                     + [(False, [])] + [(False, n) for n in _chorale(6, 3)[1:]]),  # drums and an empty track
        _score_bytes([(True, [(0, 4 * STEP, 40)])]),  # drums only: no notes
    ]
    for data in files:
        fast, reference = _both_paths(data, fc, monkeypatch)
        assert fast == reference


def test_the_bach_chorales_give_the_same_phrases_on_both_paths(bach_midi, monkeypatch):
    fc = FeatureConfig()
    for path in bach_midi[:8]:
        fast, reference = _both_paths(path.read_bytes(), fc, monkeypatch)
        assert fast == reference
        assert fast[0][0] > 0  # phrases were cut, so the comparison compared something


def test_a_buffer_the_decoder_refuses_falls_back_to_numpy(monkeypatch):
    fc = FeatureConfig(track_names=["a", "b", "c"])
    data = midi_bytes(_chorale(6, 3))
    monkeypatch.setattr(pianoroll, "_note_states", False)
    expected = _fields(midi_to_phrases(data, fc))
    assert expected[0][0] > 0
    real = pianoroll._gather_note_states

    def cut_short(score, fc):
        buf, counts = real(score, fc)
        return buf[:-5], counts  # not whole records: the kernel says so and the numpy() path runs

    monkeypatch.setattr(pianoroll, "_note_states", True)
    monkeypatch.setattr(pianoroll, "_score_states", False)
    monkeypatch.setattr(pianoroll, "_gather_note_states", cut_short)
    assert _fields(midi_to_phrases(data, fc)) == expected


def test_the_installed_symusic_pickles_time_signatures_and_tempos_in_the_layout_decoded():
    assert pianoroll._meta_state_layout_ok()


def _with_meta(numerator: int, denominator: int, mspq: int) -> bytes:
    from symusic import Tempo, TimeSignature

    score = Score.from_midi(midi_bytes(_chorale(6, 4)))
    score.time_signatures = [TimeSignature(0, numerator, denominator)]
    score.tempos = [Tempo(0, mspq=mspq)]
    return score.dumps_midi()


@pytest.mark.parametrize("meta, outcome", [
    ((3, 4, 500_000), "3/4 bars"),
    ((4, 4, 50_000), "absurd tempo warning"),
    ((65, 4, 500_000), "invalid time signature 65/4"),
    ((3, 32, 500_000), "does not fit a grid"),  # 1.5 steps a bar
])
def test_time_signature_and_tempo_read_from_pickles_as_from_objects(meta, outcome, monkeypatch):
    data = _with_meta(*meta)
    results = []
    monkeypatch.setattr(pianoroll, "_score_states", False)
    for use_states in (True, False):
        monkeypatch.setattr(pianoroll, "_meta_states", use_states)
        try:
            results.append(_fields(midi_to_phrases(data, FeatureConfig())))
        except BadInput as e:
            results.append(("BadInput", str(e)))
    assert results[0] == results[1]
    if outcome == "3/4 bars":
        assert results[0][3][:3] == [0, 1, 2]  # phrases start every 3/4 bar (12 steps), numbered by bar
    elif outcome == "absurd tempo warning":
        assert results[0][-1] == ["absurd tempo ignored (the step grid is tempo-free)"]
    else:
        assert results[0][0] == "BadInput" and outcome in results[0][1]


def test_refused_meta_buffers_fall_back_to_symusic_objects(monkeypatch):
    data = _with_meta(4, 4, 50_000)
    monkeypatch.setattr(pianoroll, "_score_states", False)
    monkeypatch.setattr(pianoroll, "_meta_states", True)
    monkeypatch.setattr(pianoroll, "_decode_meta_states", lambda ts, tempos: (False, 0, 0, 0, False, False))
    r = midi_to_phrases(data, FeatureConfig())
    assert r.warnings == ["absurd tempo ignored (the step grid is tempo-free)"] and len(r.phrases) > 0


# --- the whole-score walk -------------------------------------------------------------------------

FILES = {
    "chorale": lambda: midi_bytes(_chorale(9, 4)),
    "empty track": lambda: midi_bytes(_chorale(5, 3) + [[]]),
    "too short": lambda: midi_bytes(_chorale(2, 4)),
    "tpq 96": lambda: midi_bytes(_chorale(6, 4), tpq=96),
    "drums between": lambda: _score_bytes([(False, n) for n in _chorale(6, 2)[:1]]
                                          + [(True, [(0, STEP, 36), (STEP, 2 * STEP, 38)])] + [(False, [])]
                                          + [(False, n) for n in _chorale(6, 3)[1:]]),
    "drums only": lambda: _score_bytes([(True, [(0, 4 * STEP, 40)])]),
    "3/4": lambda: _with_meta(3, 4, 500_000),
    "absurd tempo": lambda: _with_meta(4, 4, 50_000),
    "invalid signature": lambda: _with_meta(65, 4, 500_000),
    "unfitting signature": lambda: _with_meta(3, 32, 500_000),
}


def _walk_and_reference(data: bytes, fc: FeatureConfig, monkeypatch) -> tuple:
    """midi_to_phrases through the whole-score walk, then with every pickle path off."""
    out = []
    for use in (True, False):
        for flag in ("_score_states", "_note_states", "_meta_states"):
            monkeypatch.setattr(pianoroll, flag, use)
        try:
            out.append(_fields(midi_to_phrases(data, fc)))
        except BadInput as e:
            out.append(("BadInput", str(e)))
    return tuple(out)


def _usual(data: bytes, fc: FeatureConfig) -> bool:
    """Whether the walk itself answered (rather than handing the file to the general path)."""
    from symusic.core import ScoreTick

    state = np.frombuffer(ScoreTick.from_midi(data).__getstate__(), np.uint8)
    return pianoroll._score_state_to_phrases(
        state, fc.n_tracks, fc.track_mode == "merge", fc.steps_per_bar, fc.max_steps_per_file, fc.pitch_low,
        fc.pitch_high, np.array(fc.transpose, np.int8), fc.hop_bars, fc.steps_per_phrase,
        float(fc.min_active_fraction))[0]


def test_the_installed_symusic_pickles_scores_in_the_layout_walked():
    # If this fails after a symusic upgrade, ingest still works (the per-list paths) but loses its speed.
    assert pianoroll._score_state_layout_ok()


def test_the_walk_finds_each_feeding_track_and_refuses_a_cut_or_padded_score():
    from symusic import TextMeta

    score = Score(TPQ)
    for name, is_drum, notes in [("soprano", False, [(0, 60)]), ("", True, [(0, 36)]), ("", False, []),
                                 ("bass", False, [(STEP, 62), (0, 64)])]:
        track = Track(name, program=0, is_drum=is_drum)
        for start, pitch in notes:
            track.notes.append(Note(start, STEP, pitch, 90))
        score.tracks.append(track)
    score.tracks[3].lyrics.append(TextMeta(0, "Halleluja"))
    score.markers.append(TextMeta(0, "Fine"))
    buf = np.frombuffer(score.__getstate__(), np.uint8)
    ok, tpq, offsets, counts, ts_at, tempos_at = pianoroll._walk_score_state(buf, 4, False)
    assert ok and tpq == TPQ and counts.tolist() == [1, 2] and len(offsets) == 2
    notes = [pianoroll._decode_note_states(buf[o : o + 4 + 12 * n], n) for o, n in zip(offsets, counts)]
    assert [(t.tolist(), p.tolist()) for t, _, p, _ in notes] == [([0], [60]), ([STEP, 0], [62, 64])]
    assert pianoroll._walk_score_state(buf, 1, False)[3].tolist() == [1]  # one output track: the first voice
    assert pianoroll._walk_score_state(buf, 1, True)[3].tolist() == [3]  # merged: every voice, no drums
    assert not pianoroll._walk_score_state(buf[:-1], 4, False)[0]
    assert not pianoroll._walk_score_state(np.concatenate([buf, buf[:1]]), 4, False)[0]
    assert not pianoroll._walk_score_state(buf[:6], 4, False)[0]


@pytest.mark.parametrize("fc, walks", [
    (FeatureConfig(), True),
    (FeatureConfig(track_names=["all"], track_mode="merge"), True),
    (FeatureConfig(track_names=["a", "b"]), True),
    (FeatureConfig(transpose=[-2, 0, 3], min_active_fraction=0.9), False),  # several shifts: the general path
    (FeatureConfig(bars=2, hop_bars=2, pitch_low=50, pitch_high=70), False),  # windows dropped: the general path
], ids=["default", "merge", "two-tracks", "transposed", "narrow"])
def test_the_walk_gives_what_the_plain_path_gives(fc, walks, monkeypatch):
    walked = []
    for name, make in FILES.items():
        data = make()
        fast, reference = _walk_and_reference(data, fc, monkeypatch)
        assert fast == reference, name
        if _usual(data, fc):
            walked.append(name)
    # the walk answered where it may (else this compared the general path with itself), and handed the
    # files it must not judge (no notes, a bad signature, an absurd tempo, too short) to the general path
    assert bool(walked) == walks
    assert not {"too short", "drums only", "absurd tempo", "invalid signature", "unfitting signature"} & set(walked)


def test_the_walk_answers_for_the_bach_chorales_as_the_plain_path(bach_midi, monkeypatch):
    fc = FeatureConfig()
    for path in bach_midi[:12]:
        data = path.read_bytes()
        fast, reference = _walk_and_reference(data, fc, monkeypatch)
        assert fast == reference and fast[0][0] > 0
        assert _usual(data, fc)
