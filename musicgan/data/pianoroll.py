"""MIDI bytes -> multi-track binary pianoroll phrases. This is the ingest hot path.

symusic parses MIDI in C++ (about 130x faster than pretty_midi here), and the roll is filled
with numpy on an integer tick grid, so no float rounding can move a note. pretty_midi stays the
library for MIDI objects handed to users (:func:`roll_to_pretty_midi`).

Grid: ``steps_per_bar`` steps per 4/4 bar, i.e. ``steps_per_bar / 4`` steps per quarter note,
whatever the tempo. A note covers steps ``floor(start)`` up to, not including, ``floor(end)``,
the same rule as ``pretty_midi.PrettyMIDI.get_piano_roll``. Phrases start on downbeats of the
first time signature (time 0 is taken as a downbeat) and are ``bars * steps_per_bar`` long.

Tracks (``FeatureConfig.track_mode``): ``index`` sends the i-th non-drum MIDI track with notes to
output track i; ``merge`` sends every non-drum note to one track; ``program`` makes a band.

Band tracks (``program``) follow MuseGAN's LPD-5 merge (Dong et al., AAAI 2018; the Lakh Pianoroll
Dataset's ``lpd_5``), so a band build matches the data MuseGAN was trained on. Every instrument
goes by its General MIDI program (0-based) to one family track; several instruments of a family
merge (their cells are OR-ed):

- ``drums``: every drum track (``is_drum``, i.e. MIDI channel 10), whatever its program. The pitch
  of a drum note names the drum (GM percussion key map: 35 kick ... 81 open triangle), so drum
  notes keep their pitch and are never transposed by ``transpose``. A hit fills exactly its onset
  step: drums are one-shots and files give them arbitrary lengths, often shorter than a step, which
  the floor rule above would drop (``pypianoroll`` too keeps drum onsets only). A hit outside the
  pitch range is left out with a warning instead of dropping the phrase (``--pitch-range 24:108``,
  MuseGAN's 84 pitches, keeps the whole key map).
- ``piano``: programs 0-7 (acoustic and electric pianos, harpsichord, clavinet).
- ``guitar``: 24-31.
- ``bass``: 32-39.
- ``strings``: LPD-5's catch-all for the other pitched instruments: 8-23 (chromatic percussion,
  organ), 40-95 (strings, ensemble, brass, reed, pipe, synth lead, synth pad) and 104-111 (ethnic).
- dropped: 96-103 (synth effects) and 112-127 (percussive: agogo, woodblock, taiko, synth drum...;
  sound effects), as in LPD-5: they are neither a band part nor pitched lines.

An instrument whose family has no track in ``track_names`` (e.g. ``--tracks piano,bass``) is
dropped. Every track keeps chords (the roll is binary), so piano and guitar chords survive; a model
for them needs ``model.output=binary``. Out of range pitched notes drop a phrase as in the other
modes. :func:`roll_to_pretty_midi` and :func:`roll_to_midi_bytes` give each band track its
:data:`BAND_PROGRAMS` instrument and put drums on channel 10.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided
from symusic.core import ScoreTick

from musicgan.config import BAND_TRACKS, FeatureConfig

# General MIDI program (0-based) -> band track (None: dropped); see the module docstring.
GM_PROGRAM_TRACK: tuple[str | None, ...] = tuple(
    "piano" if p < 8 else "guitar" if 24 <= p < 32 else "bass" if 32 <= p < 40
    else "strings" if p < 96 or 104 <= p < 112 else None
    for p in range(128))
BAND_PROGRAMS = {"drums": 0, "piano": 0, "guitar": 25, "bass": 33, "strings": 48}
"""The instrument each band track is rendered with: Acoustic Grand Piano, Acoustic Guitar (steel),
Electric Bass (finger), String Ensemble 1; drums play on channel 10 (program 0: the standard kit)."""
SATB_PROGRAM = 52  # "Choir Aahs", for every track of the other layouts


class BadInput(Exception):
    """A file that cannot become training data; the message is the reason kept in the manifest."""


@dataclass
class FileResult:
    """What one MIDI file gave: phrases plus bookkeeping.

    ``phrases`` is time-major, ``[N, steps, tracks, pitches]``: that is how the roll is built, and
    the shards store it so; readers transpose to ``[N, tracks, steps, pitches]`` when they decode.
    """

    phrases: np.ndarray
    start_bars: np.ndarray
    transposes: np.ndarray
    n_steps: int
    phrases_out_of_range: int = 0
    phrases_too_sparse: int = 0
    drum_hits_out_of_range: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_midi(data: bytes, fc: FeatureConfig):
    """Parse MIDI bytes with symusic; any parser complaint becomes :class:`BadInput`."""
    if len(data) == 0:
        raise BadInput("empty file (0 bytes)")
    if len(data) > fc.max_file_bytes:
        raise BadInput(f"file too large ({len(data)} bytes > max_file_bytes {fc.max_file_bytes})")
    if data[:4] != b"MThd":
        raise BadInput("not a MIDI file (no 'MThd' header)")
    try:
        return ScoreTick.from_midi(data)  # what symusic.Score.from_midi dispatches to, minus its Python layer
    except Exception as e:  # symusic raises RuntimeError with a readable message
        raise BadInput(f"unreadable MIDI: {str(e).splitlines()[0][:200]}") from None


def bar_steps_of(score, fc: FeatureConfig) -> int:
    """Steps per bar of the first time signature; absurd signatures are :class:`BadInput`."""
    first = None
    for ts in score.time_signatures:  # usually one; a plain loop beats numpy's set-up cost here
        num, den = ts.numerator, ts.denominator
        if not (1 <= num <= 64 and 1 <= den <= 64 and den & (den - 1) == 0):
            raise BadInput(f"invalid time signature {num}/{den}")
        first = first or (num, den)
    return _bar_steps(first, fc)


def _bar_steps(first: tuple[int, int] | None, fc: FeatureConfig) -> int:
    if first is None:
        return fc.steps_per_bar
    steps = fc.steps_per_bar * first[0] / first[1]
    if steps != int(steps) or steps < 1:
        raise BadInput(f"time signature {first[0]}/{first[1]} does not fit a grid of {fc.steps_per_bar} steps per bar")
    return int(steps)


def band_track(program: int, is_drum: bool) -> str | None:
    """The band track (``track_mode="program"``) an instrument goes to; None: dropped."""
    return "drums" if is_drum else GM_PROGRAM_TRACK[program]


def _check_tpq(score) -> int:
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise BadInput(f"invalid ticks per quarter note ({tpq})")
    return tpq


def _gather_notes(score, fc: FeatureConfig):
    """``index``/``merge`` modes: ``(time, duration, pitch, counts)`` of the tracks that feed an output
    track, concatenated."""
    kept, counts = _feeding_tracks(score, fc, lambda track: _notes_and_count(track.notes.numpy()))
    if len(kept) == 1:  # one voice: no copies
        return kept[0]["time"], kept[0]["duration"], kept[0]["pitch"], counts
    return (np.concatenate([k["time"] for k in kept]), np.concatenate([k["duration"] for k in kept]),
            np.concatenate([k["pitch"] for k in kept]), counts)


def _notes_and_count(notes: dict) -> tuple[dict, int]:
    return notes, len(notes["time"])


def _feeding_tracks(score, fc: FeatureConfig, read) -> tuple[list, np.ndarray]:
    """One pass over the tracks: the i-th non-drum track with notes feeds output track i (or all feed
    track 0 when merging); extra tracks are ignored. ``read(track)`` gives ``(what to keep, notes)``;
    returns what was kept of each feeding track and the note count per output track."""
    kept, counts = [], []
    merge, n_out = fc.track_mode == "merge", fc.n_tracks
    for track in score.tracks:
        if track.is_drum:
            continue
        item, n = read(track)
        if n <= 0:
            continue
        if not merge and len(counts) == n_out:
            break
        kept.append(item)
        if merge and counts:
            counts[0] += n
        else:
            counts.append(n)
    if not counts:
        raise BadInput("no notes")
    return kept, np.array(counts, np.int64)


# A track's notes, read without notes.numpy(): symusic pickles a note list (``NoteTickList.__getstate__``)
# as a uint32 count and then the C++ ``Note`` structs as they lie in memory (int32 time, int32
# duration, int8 pitch, int8 velocity, 2 padding bytes). One bytes object per track is about 1 us;
# ``numpy()`` builds a dict of four arrays, about 6 us a track, a quarter of the whole file's budget.
# This layout is symusic's, not a documented format: it is checked once in a process
# (:func:`_note_state_layout_ok`, on first use) and every buffer is checked again as it is decoded;
# where either check fails the ``numpy()`` path (:func:`_gather_notes`) runs instead, same result.
NOTE_STATE_HEADER_BYTES, NOTE_STATE_RECORD_BYTES = 4, 12


def _gather_note_states(score, fc: FeatureConfig):
    """:func:`_gather_notes`, each track's notes as its pickled note list: ``(bytes of every kept
    track's state, counts)``; :func:`_decode_note_states` turns them into arrays in the kernel."""
    states, counts = _feeding_tracks(score, fc, _state_and_count)
    return np.frombuffer(b"".join(states), np.uint8), counts


def _state_and_count(track) -> tuple[bytes, int]:
    state = track.notes.__getstate__()
    return state, (len(state) - NOTE_STATE_HEADER_BYTES) // NOTE_STATE_RECORD_BYTES  # checked when decoded


@numba.njit(cache=True, nogil=True)
def _le_int32(buf, o):  # pragma: no cover (jitted)
    v = np.int64(buf[o]) | np.int64(buf[o + 1]) << 8 | np.int64(buf[o + 2]) << 16 | np.int64(buf[o + 3]) << 24
    return v - (np.int64(1) << 32) if v >= np.int64(1) << 31 else v


@numba.njit(cache=True, nogil=True)
def _read_note_records(buf, o, n, time, duration, pitch, i):  # pragma: no cover (jitted)
    """``n`` note records from byte ``o`` into the arrays from index ``i``; returns the next index."""
    for _ in range(n):
        time[i] = _le_int32(buf, o)
        duration[i] = _le_int32(buf, o + 4)
        p = np.int64(buf[o + 8])
        pitch[i] = p - 256 if p >= 128 else p
        o += NOTE_STATE_RECORD_BYTES
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _decode_note_states(buf, n_notes):  # pragma: no cover (jitted)
    """Concatenated pickled note lists -> ``(time, duration, pitch, ok)``; ``ok`` is False when the
    buffer is not exactly ``n_notes`` records under their counts (a layout this code does not know)."""
    time = np.empty(n_notes, np.int64)
    duration = np.empty(n_notes, np.int64)
    pitch = np.empty(n_notes, np.int64)
    o, i = 0, 0
    while o + NOTE_STATE_HEADER_BYTES <= buf.shape[0]:
        n = _le_int32(buf, o)
        o += NOTE_STATE_HEADER_BYTES
        if n < 0 or i + n > n_notes or o + n * NOTE_STATE_RECORD_BYTES > buf.shape[0]:
            return time, duration, pitch, False
        i = _read_note_records(buf, o, n, time, duration, pitch, i)
        o += n * NOTE_STATE_RECORD_BYTES
    return time, duration, pitch, o == buf.shape[0] and i == n_notes


def _note_state_layout_ok() -> bool:
    """Whether this symusic pickles note lists as :func:`_decode_note_states` reads them: two known
    notes (a negative time, a duration over 16 bits, pitch 127) must come back as they went in."""
    try:
        from symusic.core import NoteTickList

        time, duration = np.array([7, -3], np.int32), np.array([70_000, 5], np.int32)
        pitch = np.array([60, 127], np.int8)
        state = NoteTickList.from_numpy(time, duration, pitch, np.array([90, 1], np.int8)).__getstate__()
        t, d, p, ok = _decode_note_states(np.frombuffer(state, np.uint8), 2)
        return bool(ok) and (t == time).all() and (d == duration).all() and (p == pitch).all()
    except Exception:  # any surprise: use notes.numpy()
        return False


# TimeSignature: int32 time, uint8 numerator, uint8 denominator, 2 padding; Tempo: int32 time, int32 mspq
META_STATE_RECORD_BYTES = 8


@numba.njit(cache=True, nogil=True)
def _decode_meta_states(ts_buf, tempo_buf):  # pragma: no cover (jitted)
    """Pickled time signatures and tempos -> what :func:`bar_steps_of` and the tempo check in
    :func:`midi_to_phrases` read from them, without a Python object per event:
    ``(ok, n_signatures, numerator, denominator, invalid, absurd_tempo)``. ``numerator/denominator``
    are the first invalid signature's where ``invalid``, else the first signature's. ``ok`` is False
    when a buffer is not whole records under its count."""
    n_ts = _le_int32(ts_buf, 0) if ts_buf.shape[0] >= NOTE_STATE_HEADER_BYTES else -1
    n_tempo = _le_int32(tempo_buf, 0) if tempo_buf.shape[0] >= NOTE_STATE_HEADER_BYTES else -1
    if (n_ts < 0 or n_tempo < 0 or ts_buf.shape[0] != NOTE_STATE_HEADER_BYTES + n_ts * META_STATE_RECORD_BYTES
            or tempo_buf.shape[0] != NOTE_STATE_HEADER_BYTES + n_tempo * META_STATE_RECORD_BYTES):
        return False, 0, 0, 0, False, False
    num, den, invalid = 0, 0, False
    for i in range(n_ts):
        o = NOTE_STATE_HEADER_BYTES + i * META_STATE_RECORD_BYTES + 4
        a, b = np.int64(ts_buf[o]), np.int64(ts_buf[o + 1])
        if not (1 <= a <= 64 and 1 <= b <= 64 and b & (b - 1) == 0):
            num, den, invalid = a, b, True
            break
        if i == 0:
            num, den = a, b
    absurd = False
    for i in range(n_tempo):
        mspq = _le_int32(tempo_buf, NOTE_STATE_HEADER_BYTES + i * META_STATE_RECORD_BYTES + 4)
        if not 60_000 <= mspq <= 12_000_000:
            absurd = True
            break
    return True, n_ts, num, den, invalid, absurd


def _meta_state_layout_ok() -> bool:
    """Whether this symusic pickles time signatures and tempos as :func:`_decode_meta_states` reads
    them: known lists (a valid 3/8; an invalid 65/4 second; an absurd second tempo) must decode so."""
    try:
        from symusic.core import TempoTickList, TimeSignatureTickList

        def buf(state: bytes) -> np.ndarray:
            return np.frombuffer(state, np.uint8)

        ts = TimeSignatureTickList.from_numpy(np.array([0, 960], np.int32), np.array([3, 65], np.uint8),
                                              np.array([8, 4], np.uint8))
        tempos = TempoTickList.from_numpy(np.array([0, 480], np.int32), np.array([12_000_000, 59_999], np.int32))
        calm = TempoTickList.from_numpy(np.array([0], np.int32), np.array([60_000], np.int32))
        return (_decode_meta_states(buf(ts.__getstate__()), buf(tempos.__getstate__())) == (True, 2, 65, 4, True, True)
                and _decode_meta_states(buf(ts[:1].__getstate__()), buf(calm.__getstate__()))
                == (True, 1, 3, 8, False, False))
    except Exception:  # any surprise: read them through symusic's objects
        return False


_note_states: bool | None = None  # _note_state_layout_ok(), asked on first use (it runs a jitted kernel)
_meta_states: bool | None = None  # _meta_state_layout_ok(), asked on first use
_score_states: bool | None = None  # _score_state_layout_ok(), asked on first use


def _layout_known(flag: str, check) -> bool:
    """The module-level answer ``flag`` of a layout check, asking ``check()`` once, on first use."""
    known = globals()[flag]
    if known is None:
        known = globals()[flag] = bool(check())
    return known


def _use_note_states() -> bool:
    return _layout_known("_note_states", _note_state_layout_ok)


def _use_meta_states() -> bool:
    return _layout_known("_meta_states", _meta_state_layout_ok)


def _use_score_states() -> bool:
    return _layout_known("_score_states", _score_state_layout_ok)


def _bar_steps_and_warnings(score, fc: FeatureConfig) -> tuple[int, list[str]]:
    """:func:`bar_steps_of` and the tempo check of :func:`midi_to_phrases`, from the pickled lists
    where their layout is known (an event's Python object costs more than the whole decode)."""
    found = None
    if _use_meta_states():
        found = _decode_meta_states(np.frombuffer(score.time_signatures.__getstate__(), np.uint8),
                                    np.frombuffer(score.tempos.__getstate__(), np.uint8))
    if found is not None and found[0]:
        _, n_signatures, num, den, invalid, absurd = found
        if invalid:
            raise BadInput(f"invalid time signature {num}/{den}")
        bar_steps = _bar_steps((num, den) if n_signatures else None, fc)
    else:
        bar_steps = bar_steps_of(score, fc)
        absurd = any(not 60_000 <= tempo.mspq <= 12_000_000 for tempo in score.tempos)
    # Outside 5..1000 qpm. The grid is in ticks, so tempo cannot break the roll: keep the file.
    return bar_steps, ["absurd tempo ignored (the step grid is tempo-free)"] if absurd else []


def _check_steps(n_steps: int, fc: FeatureConfig) -> None:
    if n_steps > fc.max_steps_per_file:
        raise BadInput(f"too long ({n_steps} steps > max_steps_per_file {fc.max_steps_per_file})")
    if n_steps < 0:
        raise BadInput("negative note time")


def note_steps(score, fc: FeatureConfig):
    """Every note as grid steps: ``(track, start_step, end_step, pitch)`` arrays, plus the length in steps."""
    tpq = _check_tpq(score)
    if fc.track_mode == "program":
        return _band_note_steps(score, fc, tpq)
    time, duration, pitch, counts = _gather_notes(score, fc)
    track, start, end, pitch, n_steps = _to_steps(time, duration, pitch, counts, fc.steps_per_bar // 4, tpq)
    _check_steps(n_steps, fc)
    return track, start, end, pitch, n_steps


def _band_note_steps(score, fc: FeatureConfig, tpq: int):
    """:func:`note_steps` for ``track_mode="program"``: instruments by program family, drum hits one step long."""
    out_of = {name: i for i, name in enumerate(fc.track_names)}
    steps_per_quarter = fc.steps_per_bar // 4
    times, durations, pitches, counts, out_ids = [], [], [], [], []
    drum_time, drum_pitch = [], []
    for track in score.tracks:
        out = out_of.get(band_track(track.program, track.is_drum))
        if out is None:
            continue
        notes = track.notes.numpy()
        if len(notes["time"]) == 0:
            continue
        if track.is_drum:
            drum_time.append(notes["time"])
            drum_pitch.append(notes["pitch"])
            continue
        times.append(notes["time"])
        durations.append(notes["duration"])
        pitches.append(notes["pitch"])
        counts.append(len(notes["time"]))
        out_ids.append(out)
    if not counts and not drum_time:
        raise BadInput("no notes in the band's instrument families (" + ", ".join(fc.track_names) + ")")
    parts, n_steps = [], 0
    if counts:
        track, start, end, pitch, n_steps = _to_steps(
            np.concatenate(times), np.concatenate(durations), np.concatenate(pitches),
            np.asarray(counts, np.int64), steps_per_quarter, tpq)
        if n_steps < 0:
            raise BadInput("negative note time")
        parts.append((np.asarray(out_ids, np.int64)[track], start, end, pitch))
    if drum_time:
        time = np.concatenate(drum_time).astype(np.int64)
        if (time < 0).any():
            raise BadInput("negative note time")
        start = time * steps_per_quarter // tpq
        n_steps = max(n_steps, int(start.max()) + 1)
        parts.append((np.full(len(start), out_of["drums"], np.int64), start, start + 1,
                      np.concatenate(drum_pitch).astype(np.int64)))
    if n_steps > fc.max_steps_per_file:
        raise BadInput(f"too long ({n_steps} steps > max_steps_per_file {fc.max_steps_per_file})")
    track, start, end, pitch = (np.concatenate(column) for column in zip(*parts))
    return track, start, end, pitch, n_steps


@numba.njit(cache=True, nogil=True)
def _to_steps(time, duration, pitch, counts, steps_per_quarter, tpq):  # pragma: no cover (jitted)
    """Ticks -> grid steps, ``floor(tick * steps_per_quarter / tpq)`` in integers so no float can
    move a note; notes shorter than one step vanish, as in pretty_midi's ``get_piano_roll``.
    Returns ``n_steps = -1`` for a negative time."""
    n = time.shape[0]
    track_out = np.empty(n, np.int64)
    start_out = np.empty(n, np.int64)
    end_out = np.empty(n, np.int64)
    pitch_out = np.empty(n, np.int64)
    kept, n_steps, i = 0, 0, 0
    for t in range(counts.shape[0]):
        for _ in range(counts[t]):
            t0 = np.int64(time[i])
            s = t0 * steps_per_quarter // tpq
            e = (t0 + np.int64(duration[i])) * steps_per_quarter // tpq
            if t0 < 0:
                return track_out[:0], start_out[:0], end_out[:0], pitch_out[:0], -1
            if e > s:
                track_out[kept], start_out[kept], end_out[kept], pitch_out[kept] = t, s, e, pitch[i]
                kept += 1
                n_steps = max(n_steps, e)
            i += 1
    return track_out[:kept], start_out[:kept], end_out[:kept], pitch_out[:kept], n_steps


@numba.njit(cache=True, nogil=True)
def _fill_band(track, start, end, pitch, n_steps, n_tracks, band_lo, band_hi,
               fixed_track=-1, fixed_lo=0, fixed_hi=0):  # pragma: no cover (jitted)
    """Roll ``[steps, tracks, band]`` plus per-step summaries, in one pass over the notes' cells.

    Notes of ``fixed_track`` (the drums of a band; -1: none) go to their own roll
    ``[steps, fixed_hi - fixed_lo]`` instead, never transposed: they count as sounding but not
    towards the pitch range, and the number of them outside ``fixed_lo..fixed_hi`` is returned."""
    roll = np.zeros((n_steps, n_tracks, band_hi - band_lo), np.bool_)
    fixed_roll = np.zeros((n_steps if fixed_track >= 0 else 0, fixed_hi - fixed_lo), np.bool_)
    fixed_outside = 0
    active = np.zeros(n_steps, np.bool_)
    outside = np.zeros(n_steps, np.bool_)
    low = np.full(n_steps, 1 << 20, np.int64)
    high = np.full(n_steps, -1, np.int64)
    for i in range(start.shape[0]):
        p = pitch[i]
        if track[i] == fixed_track:
            if p < fixed_lo or p >= fixed_hi:
                fixed_outside += 1
                continue
            for k in range(start[i], end[i]):
                fixed_roll[k, p - fixed_lo] = True
                active[k] = True
            continue
        if p < band_lo or p >= band_hi:
            for k in range(start[i], end[i]):
                outside[k] = True
            continue
        q = p - band_lo
        t = track[i]
        for k in range(start[i], end[i]):
            roll[k, t, q] = True
            active[k] = True
            if q < low[k]:
                low[k] = q
            if q > high[k]:
                high[k] = q
    return roll, active, outside, low, high, fixed_roll, fixed_outside


@numba.njit(cache=True, nogil=True)
def _window_stats(starts, length, active, outside, low, high):  # pragma: no cover (jitted)
    """Per window: sounding steps, whether an out-of-band note sounds, lowest and highest pitch."""
    n = starts.shape[0]
    n_active = np.zeros(n, np.int64)
    any_outside = np.zeros(n, np.bool_)
    win_low = np.full(n, 1 << 20, np.int64)
    win_high = np.full(n, -1, np.int64)
    for w in range(n):
        for k in range(starts[w], starts[w] + length):
            n_active[w] += active[k]
            any_outside[w] |= outside[k]
            win_low[w] = min(win_low[w], low[k])
            win_high[w] = max(win_high[w], high[k])
    return n_active, any_outside, win_low, win_high


@numba.njit(cache=True, nogil=True)
def _roll_and_windows(track, start, end, pitch, n_steps, n_tracks, band_lo, band_hi, starts, length,
                      min_active, shift_lo, n_pitches, fixed_track, fixed_lo):  # pragma: no cover (jitted)
    """The band roll, and for every (transposition, window) whether the phrase is kept.

    Returns ``(roll, fits [shifts, windows], too_sparse, out_of_range, fixed_roll, fixed_outside)``;
    ``shift_lo[k]`` is the band index of the lowest source pitch that transposition k maps into
    range (-1: none fits). ``fixed_track`` as in :func:`_fill_band`, over ``fixed_lo + n_pitches``.
    """
    roll, active, outside, low, high, fixed_roll, fixed_outside = _fill_band(
        track, start, end, pitch, n_steps, n_tracks, band_lo, band_hi, fixed_track, fixed_lo, fixed_lo + n_pitches)
    n_active, any_outside, win_low, win_high = _window_stats(starts, length, active, outside, low, high)
    fits = np.zeros((shift_lo.shape[0], starts.shape[0]), np.bool_)
    too_sparse, out_of_range = 0, 0
    for w in range(starts.shape[0]):
        dense = n_active[w] >= min_active
        if not dense:
            too_sparse += shift_lo.shape[0]
            continue
        for k in range(shift_lo.shape[0]):
            lo = shift_lo[k]
            ok = lo >= 0 and not any_outside[w] and win_low[w] >= lo and win_high[w] < lo + n_pitches
            fits[k, w] = ok
            out_of_range += not ok
    return roll, fits, too_sparse, out_of_range, fixed_roll, fixed_outside


@numba.njit(cache=True, nogil=True)
def _phrase_windows(track, start, end, pitch, n_steps, n_tracks, pitch_low, pitch_high, transposes, hop_steps,
                    bar_steps, length, min_active_fraction, fixed_track):  # pragma: no cover (jitted)
    """Every downbeat window (``hop_steps`` apart) of the band roll, and which (transposition, window)
    phrases are kept, with their start bars (int32) and transpositions (int8), shift by shift.

    The roll is built once over the band of pitches any transposition can use; ``shift_lo[k]`` is
    the band index where transposition k's range starts (-1: the range does not fit the band).
    ``windows`` is a strided view ``[windows, length, tracks, band]`` of the roll, no copy.
    Returns ``(windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range,
    fixed_roll, fixed_outside)``."""
    n_pitches = pitch_high - pitch_low
    t_max, t_min = 0, 0
    if transposes.shape[0]:  # no shift at all: no phrase, and no crash
        t_max, t_min = transposes.max(), transposes.min()
    band_lo = max(pitch_low - t_max, 0)
    band_hi = min(pitch_high - t_min, 128)
    shift_lo = np.empty(transposes.shape[0], np.int64)
    for k in range(transposes.shape[0]):
        lo = pitch_low - transposes[k] - band_lo
        shift_lo[k] = lo if 0 <= lo and lo + n_pitches <= band_hi - band_lo else -1
    starts = np.arange(0, n_steps - length + 1, hop_steps)
    roll, fits, too_sparse, out_of_range, fixed_roll, fixed_outside = _roll_and_windows(
        track, start, end, pitch, n_steps, n_tracks, band_lo, band_hi, starts, length,
        math.ceil(min_active_fraction * length), shift_lo, n_pitches, fixed_track, pitch_low)
    n_kept = 0
    for k in range(fits.shape[0]):
        for w in range(fits.shape[1]):
            n_kept += fits[k, w]
    start_bars = np.empty(n_kept, np.int32)
    kept_transposes = np.empty(n_kept, np.int8)
    j = 0
    for k in range(fits.shape[0]):
        for w in range(fits.shape[1]):
            if fits[k, w]:
                start_bars[j] = starts[w] // bar_steps
                kept_transposes[j] = transposes[k]
                j += 1
    windows = as_strided(roll, shape=(starts.shape[0], length, n_tracks, band_hi - band_lo),
                         strides=(hop_steps * roll.strides[0], roll.strides[0], roll.strides[1], roll.strides[2]))
    return (windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range, fixed_roll,
            fixed_outside)


@numba.njit(cache=True, nogil=True)
def _notes_to_windows(time, duration, pitch, counts, steps_per_quarter, tpq, max_steps, n_tracks, pitch_low,
                      pitch_high, transposes, hop_steps, bar_steps, length,
                      min_active_fraction):  # pragma: no cover (jitted)
    """``index``/``merge`` modes in one call: :func:`_to_steps` then :func:`_phrase_windows`, so the
    step arrays never become Python objects (each array crossing the numba boundary costs about a
    microsecond). Returns ``n_steps`` and then what :func:`_phrase_windows` returns, less the
    drums; a file with no window (too short, too long, a negative time: :func:`_check_steps`
    tells) gets no windows."""
    track, start, end, pitch, n_steps = _to_steps(time, duration, pitch, counts, steps_per_quarter, tpq)
    if n_steps < length or n_steps > max_steps:
        track, start, end, pitch, n_steps_roll = track[:0], start[:0], end[:0], pitch[:0], length
    else:
        n_steps_roll = n_steps
    windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range, _, _ = _phrase_windows(
        track, start, end, pitch, n_steps_roll, n_tracks, pitch_low, pitch_high, transposes, hop_steps, bar_steps,
        length, min_active_fraction, -1)
    if n_steps_roll != n_steps:  # nothing to cut: an empty window set, never looked at
        return n_steps, windows[:0], fits[:, :0], shift_lo, start_bars[:0], kept_transposes[:0], 0, 0
    return n_steps, windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range


@numba.njit(cache=True, nogil=True)
def _states_to_windows(buf, counts, steps_per_quarter, tpq, max_steps, n_tracks, pitch_low, pitch_high,
                       transposes, hop_steps, bar_steps, length, min_active_fraction):  # pragma: no cover (jitted)
    """:func:`_notes_to_windows` from pickled note lists (:func:`_gather_note_states`); first the
    decoder's ``ok``: when False nothing else is meaningful."""
    time, duration, pitch, ok = _decode_note_states(buf, counts.sum())
    return (ok,) + _notes_to_windows(time, duration, pitch, counts, steps_per_quarter, tpq, max_steps, n_tracks,
                                     pitch_low, pitch_high, transposes, hop_steps, bar_steps, length,
                                     min_active_fraction)


@numba.njit(cache=True, nogil=True)
def _states_to_phrases(buf, counts, steps_per_quarter, tpq, max_steps, n_tracks, pitch_low, pitch_high,
                       transposes, hop_steps, bar_steps, length, min_active_fraction):  # pragma: no cover (jitted)
    """:func:`_states_to_windows` for the usual file: one shift and every window kept, where the
    windows (cropped to the pitch range) are the phrases. Returns ``(ok, usual, n_steps, phrases,
    start_bars, kept_transposes, too_sparse, out_of_range)``, three arrays instead of five (boxing
    an array for Python is about a microsecond); where ``usual`` is False the caller takes
    :func:`_states_to_windows`."""
    ok, n_steps, windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range = _states_to_windows(
        buf, counts, steps_per_quarter, tpq, max_steps, n_tracks, pitch_low, pitch_high, transposes, hop_steps,
        bar_steps, length, min_active_fraction)
    usual = ok and shift_lo.shape[0] == 1 and windows.shape[0] > 0 and start_bars.shape[0] == windows.shape[0]
    lo = shift_lo[0] if usual else 0
    phrases = windows[:, :, :, lo : lo + pitch_high - pitch_low] if usual else windows[:0, :, :, :0]
    return ok, usual, n_steps, phrases, start_bars, kept_transposes, too_sparse, out_of_range


# The whole score, pickled (``ScoreTick.__getstate__``, about 4 us for a chorale, one bytes object):
# int32 ticks per quarter, uint32 track count, then per track its name (uint32 length + bytes), uint8
# program, uint8 is_drum, then its notes (a note list, as above), controls, pitch bends and pedals
# (uint32 count + 8-byte records each) and lyrics (uint32 count, then per lyric int32 time + uint32
# length + text); after the tracks the time signatures, key signatures and tempos (count + 8-byte
# records each) and the markers (as lyrics). One walk over it in the kernel replaces a pickle per
# track and per meta list and their Python glue (about 12 us a chorale). Checked like the note
# lists: once in a process (:func:`_score_state_layout_ok`) and by the walk itself, which must land
# exactly on the last byte; a file it does not call usual goes the way above, same result.
@numba.njit(cache=True, nogil=True)
def _skip_list(buf, o, record_bytes):  # pragma: no cover (jitted)
    """Offset past a pickled list at ``o``: fixed-size records (``record_bytes``), or texts (time +
    length + bytes each) where ``record_bytes`` is 0; -1 where it would run past the buffer."""
    if o < 0 or o + NOTE_STATE_HEADER_BYTES > buf.shape[0]:
        return -1
    n = _le_int32(buf, o)
    o += NOTE_STATE_HEADER_BYTES
    if n < 0:
        return -1
    if record_bytes:
        o += n * record_bytes
    else:
        for _ in range(n):
            if o + 8 > buf.shape[0]:
                return -1
            length = _le_int32(buf, o + 4)
            if length < 0:
                return -1
            o += 8 + length
    return o if o <= buf.shape[0] else -1


@numba.njit(cache=True, nogil=True)
def _walk_score_state(buf, n_out, merge):  # pragma: no cover (jitted)
    """A pickled score -> ``(ok, tpq, note_offsets, counts, time_signatures_offset, tempos_offset)``:
    where each feeding track's note list starts and its note count per output track (the choice of
    :func:`_feeding_tracks`), and where the two meta lists start. ``ok`` is False unless the walk
    ends exactly on the last byte."""
    note_offsets = np.empty(0, np.int64)
    counts = np.zeros(0, np.int64)
    if buf.shape[0] < 8:
        return False, 0, note_offsets, counts, -1, -1
    tpq, n_tracks = _le_int32(buf, 0), _le_int32(buf, 4)
    if n_tracks < 0:
        return False, tpq, note_offsets, counts, -1, -1
    note_offsets = np.empty(n_tracks, np.int64)
    counts = np.zeros(max(min(n_tracks, n_out), 1), np.int64)
    o, kept, n_counts = 8, 0, 0
    for _ in range(n_tracks):
        if o + 4 > buf.shape[0] or _le_int32(buf, o) < 0:
            return False, tpq, note_offsets[:0], counts[:0], -1, -1
        o += 4 + _le_int32(buf, o)  # the name
        if o + 2 + NOTE_STATE_HEADER_BYTES > buf.shape[0]:
            return False, tpq, note_offsets[:0], counts[:0], -1, -1
        is_drum, notes_at = buf[o + 1] != 0, o + 2
        n = _le_int32(buf, notes_at)
        o = _skip_list(buf, notes_at, NOTE_STATE_RECORD_BYTES)
        for record_bytes in (8, 8, 8, 0):  # controls, pitch bends, pedals, lyrics
            o = _skip_list(buf, o, record_bytes)
        if o < 0:
            return False, tpq, note_offsets[:0], counts[:0], -1, -1
        if is_drum or n <= 0 or (not merge and n_counts == n_out):
            continue
        note_offsets[kept] = notes_at
        kept += 1
        if merge and n_counts:
            counts[0] += n
        else:
            counts[n_counts] = n
            n_counts += 1
    time_signatures_at = o
    o = _skip_list(buf, o, META_STATE_RECORD_BYTES)
    o = _skip_list(buf, o, META_STATE_RECORD_BYTES)  # key signatures
    tempos_at = o
    o = _skip_list(buf, o, META_STATE_RECORD_BYTES)
    o = _skip_list(buf, o, 0)  # markers
    return o == buf.shape[0], tpq, note_offsets[:kept], counts[:n_counts], time_signatures_at, tempos_at


@numba.njit(cache=True, nogil=True)
def _score_state_to_phrases(buf, n_out, merge, steps_per_bar, max_steps, pitch_low, pitch_high, transposes,
                            hop_bars, length, min_active_fraction):  # pragma: no cover (jitted)
    """The hot path of :func:`midi_to_phrases` from one pickled score: ``(usual, n_steps, phrases,
    start_bars, kept_transposes, too_sparse, out_of_range)``. ``usual`` is False for anything the
    general path must judge or explain (an unknown layout, a bad or unfitting time signature, an
    absurd tempo, tpq <= 0, no notes, several shifts, a dropped window, no window at all); then the
    rest is meaningless."""
    ok, tpq, note_offsets, counts, ts_at, tempos_at = _walk_score_state(buf, n_out, merge)
    nothing = np.zeros((0, 0, 0, 0), np.bool_), np.zeros(0, np.int32), np.zeros(0, np.int8)
    if not ok or tpq <= 0 or counts.shape[0] == 0:
        return False, 0, nothing[0], nothing[1], nothing[2], 0, 0
    end = ts_at + NOTE_STATE_HEADER_BYTES + _le_int32(buf, ts_at) * META_STATE_RECORD_BYTES
    found, n_signatures, num, den, invalid, absurd = _decode_meta_states(
        buf[ts_at:end], buf[tempos_at : tempos_at + NOTE_STATE_HEADER_BYTES
                            + _le_int32(buf, tempos_at) * META_STATE_RECORD_BYTES])
    bar_steps = steps_per_bar
    if n_signatures:
        bar_steps = steps_per_bar * num // den
        if steps_per_bar * num % den or bar_steps < 1:
            return False, 0, nothing[0], nothing[1], nothing[2], 0, 0
    if not found or invalid or absurd:
        return False, 0, nothing[0], nothing[1], nothing[2], 0, 0
    n_notes = counts.sum()
    time = np.empty(n_notes, np.int64)
    duration = np.empty(n_notes, np.int64)
    pitch = np.empty(n_notes, np.int64)
    i = 0
    for t in range(note_offsets.shape[0]):  # the walk checked that every list lies inside the buffer
        o = note_offsets[t]
        i = _read_note_records(buf, o + NOTE_STATE_HEADER_BYTES, _le_int32(buf, o), time, duration, pitch, i)
    n_steps, windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range = _notes_to_windows(
        time, duration, pitch, counts, steps_per_bar // 4, tpq, max_steps, n_out, pitch_low, pitch_high, transposes,
        hop_bars * bar_steps, bar_steps, length, min_active_fraction)
    usual = shift_lo.shape[0] == 1 and windows.shape[0] > 0 and start_bars.shape[0] == windows.shape[0]
    if not usual:
        return False, 0, nothing[0], nothing[1], nothing[2], 0, 0
    lo = shift_lo[0]
    return True, n_steps, windows[:, :, :, lo : lo + pitch_high - pitch_low], start_bars, kept_transposes, \
        too_sparse, out_of_range


def _score_state_layout_ok() -> bool:
    """Whether this symusic pickles a score as :func:`_walk_score_state` reads it: a known score with
    every kind of event (a named drum track, an empty track, controls, bends, pedals, lyrics, key
    signatures, markers) must walk to its known note lists and meta, in index and in merge mode."""
    try:
        from symusic import (ControlChange, KeySignature, Note, Pedal, PitchBend, Score, Tempo, TextMeta,
                             TimeSignature, Track)

        score = Score(480)
        known = {"drums": [(0, 480, 36)], "": [], "alto": [(0, 480, 67), (480, 70_000, 127)], "b": [(7, 20, 40)]}
        for name, notes in known.items():
            track = Track(name, 5, name == "drums")
            for time, duration, pitch in notes:
                track.notes.append(Note(time, duration, pitch, 90))
            track.controls.append(ControlChange(3, 7, 100))
            track.pitch_bends.append(PitchBend(4, -5))
            track.pedals.append(Pedal(6, 8))
            track.lyrics.append(TextMeta(9, "la" * len(name)))
            score.tracks.append(track)
        score.time_signatures.append(TimeSignature(0, 3, 8))
        score.key_signatures.append(KeySignature(0, -2, 1))
        score.tempos.append(Tempo(0, 120))
        score.markers.append(TextMeta(13, "fine"))
        buf = np.frombuffer(score.__getstate__(), np.uint8)
        ok, tpq, offsets, counts, ts_at, tempos_at = _walk_score_state(buf, 4, False)
        notes = []
        for o in offsets:
            t, d, p, whole = _decode_note_states(buf[o : o + NOTE_STATE_HEADER_BYTES + _le_int32(buf, o)
                                                     * NOTE_STATE_RECORD_BYTES], _le_int32(buf, o))
            notes.append(list(zip(t.tolist(), d.tolist(), p.tolist())) if whole else None)
        meta = _decode_meta_states(buf[ts_at : ts_at + 12], buf[tempos_at : tempos_at + 12])
        return (ok and tpq == 480 and counts.tolist() == [2, 1] and notes == [known["alto"], known["b"]]
                and meta == (True, 1, 3, 8, False, False)
                and _walk_score_state(buf, 1, False)[3].tolist() == [2]
                and _walk_score_state(buf, 1, True)[3].tolist() == [3]
                and not _walk_score_state(buf[:-1], 4, False)[0])
    except Exception:  # any surprise: the per-list path
        return False


def fill_roll(n_tracks: int, n_steps: int, track, start, end, pitch, pitch_low: int, pitch_high: int) -> np.ndarray:
    """Time-major binary roll ``[steps, tracks, pitch_high - pitch_low]``; notes outside the range are left out."""
    return _fill_band(track, start, end, pitch, n_steps, n_tracks, pitch_low, pitch_high)[0]


def score_to_roll(score, fc: FeatureConfig) -> np.ndarray:
    """Full-length roll ``[tracks, steps, 128]`` over all pitches (for tests and plotting)."""
    track, start, end, pitch, n_steps = note_steps(score, fc)
    return fill_roll(fc.n_tracks, n_steps, track, start, end, pitch, 0, 128).transpose(1, 0, 2)


def _take_phrases(result: FileResult, windows, fits, shift_lo, start_bars, kept_transposes, fc: FeatureConfig,
                  drums: int = -1, drum_windows=None) -> FileResult:
    """Fill ``result`` with the kept windows, shift by shift, cropped to the pitch range.

    ``windows`` is a strided view of the roll (as numpy's sliding_window_view makes): a copy
    happens only to drop some windows, to stack several shifts, or to put in the untransposed drums."""
    n_pitches = fc.n_pitches
    result.start_bars, result.transposes = start_bars, kept_transposes
    n_kept = len(start_bars)
    if n_kept == 0:
        result.phrases = np.zeros((0, fc.steps_per_phrase, fc.n_tracks, n_pitches), bool)
        return result
    if drums < 0 and n_kept == len(windows) and len(shift_lo) == 1:  # the usual case: every window, one shift
        lo = shift_lo[0]
        result.phrases = windows if lo == 0 and windows.shape[3] == n_pitches else windows[..., lo : lo + n_pitches]
        return result
    out = []
    for k in range(len(shift_lo)):
        keep = fits[k]
        if keep.any():
            lo = shift_lo[k]
            taken = windows[..., lo : lo + n_pitches]
            if drums >= 0:  # a copy (every shift shares the roll), then the untransposed drums
                taken = taken[keep]
                taken[:, :, drums] = drum_windows[keep]
                out.append(taken)
            else:
                out.append(taken if keep.all() else taken[keep])  # [n, length, tracks, pitches]
    result.phrases = out[0] if len(out) == 1 else np.concatenate(out)
    return result


def cut_phrases(n_steps: int, bar_steps: int, notes, fc: FeatureConfig) -> FileResult:
    """Phrases on downbeats, once per transposition, cropped to the pitch range.

    The roll is built once over the band of pitches any transposition can use; notes outside
    that band only mark their steps, so a phrase touching them is dropped. Only kept phrases
    are copied, whatever the file's length.
    """
    track, start, end, pitch = notes
    length = fc.steps_per_phrase
    drums = fc.track_names.index("drums") if fc.track_mode == "program" and "drums" in fc.track_names else -1
    result = FileResult(None, None, None, n_steps)
    if n_steps < length:
        return _take_phrases(result, None, None, None, np.zeros(0, np.int32), np.zeros(0, np.int8), fc)
    hop_steps = fc.hop_bars * bar_steps
    (windows, fits, shift_lo, start_bars, kept_transposes, result.phrases_too_sparse, result.phrases_out_of_range,
     drum_roll, result.drum_hits_out_of_range) = _phrase_windows(
        track, start, end, pitch, n_steps, fc.n_tracks, fc.pitch_low, fc.pitch_high,
        np.array(fc.transpose, np.int8), hop_steps, bar_steps, length, float(fc.min_active_fraction), drums)
    drum_windows = None
    if drums >= 0:
        drum_windows = np.ndarray((len(windows), length, fc.n_pitches), bool, drum_roll, 0,
                                  (hop_steps * drum_roll.strides[0],) + drum_roll.strides)
    return _take_phrases(result, windows, fits, shift_lo, start_bars, kept_transposes, fc, drums, drum_windows)


_TRANSPOSES: dict[tuple, np.ndarray] = {}


def _transposes(fc: FeatureConfig) -> np.ndarray:
    """``fc.transpose`` as the kernels take it (int8), made once per distinct list."""
    key = tuple(fc.transpose)
    found = _TRANSPOSES.get(key)
    if found is None:
        found = _TRANSPOSES[key] = np.array(key, np.int8)  # the kernels only read it
    return found


def midi_to_phrases(data: bytes, fc: FeatureConfig) -> FileResult:
    """The whole per-file feature extraction: parse, roll, phrases. Raises :class:`BadInput`."""
    score = parse_midi(data, fc)
    if fc.track_mode != "program" and _use_score_states():  # the usual file, in one kernel call
        usual, n_steps, phrases, start_bars, kept_transposes, too_sparse, out_of_range = _score_state_to_phrases(
            np.frombuffer(score.__getstate__(), np.uint8), fc.n_tracks, fc.track_mode == "merge", fc.steps_per_bar,
            fc.max_steps_per_file, fc.pitch_low, fc.pitch_high, _transposes(fc), fc.hop_bars, fc.steps_per_phrase,
            float(fc.min_active_fraction))
        if usual:
            return FileResult(phrases, start_bars, kept_transposes, n_steps, out_of_range, too_sparse)
    bar_steps, warnings = _bar_steps_and_warnings(score, fc)
    if fc.track_mode == "program":
        track, start, end, pitch, n_steps = note_steps(score, fc)
        result = cut_phrases(n_steps, bar_steps, (track, start, end, pitch), fc)
        if result.drum_hits_out_of_range:
            warnings.append(f"{result.drum_hits_out_of_range} drum hits outside the pitch range "
                            f"{fc.pitch_low}:{fc.pitch_high} left out (General MIDI drums lie in 35..81)")
        result.warnings = warnings
        return result
    # index / merge (the hot path): what note_steps + cut_phrases do, in one kernel call
    tpq = _check_tpq(score)
    grid = (fc.steps_per_bar // 4, tpq, fc.max_steps_per_file, fc.n_tracks, fc.pitch_low, fc.pitch_high,
            np.array(fc.transpose, np.int8), fc.hop_bars * bar_steps, bar_steps, fc.steps_per_phrase,
            float(fc.min_active_fraction))
    ok = False
    if _use_note_states():
        states = _gather_note_states(score, fc)
        ok, usual, n_steps, phrases, start_bars, kept_transposes, too_sparse, out_of_range = _states_to_phrases(
            *states, *grid)
        if usual:
            _check_steps(n_steps, fc)  # cannot raise here (the file has windows), kept for the reader
            return FileResult(phrases, start_bars, kept_transposes, n_steps, out_of_range, too_sparse, 0, warnings)
        if ok:
            ok, *found = _states_to_windows(*states, *grid)
    if not ok:
        found = _notes_to_windows(*_gather_notes(score, fc), *grid)
    n_steps, windows, fits, shift_lo, start_bars, kept_transposes, too_sparse, out_of_range = found
    _check_steps(n_steps, fc)
    return _take_phrases(FileResult(None, None, None, n_steps, out_of_range, too_sparse, 0, warnings), windows,
                         fits, shift_lo, start_bars, kept_transposes, fc)


def pianoroll_of_file(data: bytes, fc: FeatureConfig) -> np.ndarray:
    """Full-length ``[tracks, steps, pitch_high - pitch_low]`` roll (for tests and plotting)."""
    return score_to_roll(parse_midi(data, fc), fc)[..., fc.pitch_low : fc.pitch_high]


# ---------------------------------------------------------------------------------------------
# back to MIDI, for users


def roll_notes(track_roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One track's ``[steps, pitches]`` roll -> (pitch index, start step, end step) of each note.

    Consecutive sounding steps of a pitch become one note (the roll has no onset channel).
    Notes come sorted by pitch, then start.
    """
    padded = np.pad(np.asarray(track_roll).astype(np.int8), ((1, 1), (0, 0)))
    change = np.diff(padded, axis=0).T  # [pitches, steps + 1]
    on_p, on_s = np.nonzero(change == 1)
    _, off_s = np.nonzero(change == -1)  # same order: each pitch's onsets and offsets alternate
    return on_p, on_s, off_s


def drum_hits(track_roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A drum track's ``[steps, pitches]`` roll -> (pitch index, start step, end step), one step per
    sounding cell: a band build keeps drum onsets only (see the module docstring), so each cell is a
    hit, and a run of cells is repeated hits (a hi-hat on every sixteenth), not one long note."""
    s, p = np.nonzero(np.asarray(track_roll))
    order = np.lexsort((s, p))  # by pitch, then start, as roll_notes
    return p[order], s[order], s[order] + 1


def track_instruments(fc: FeatureConfig, n_tracks: int, programs: list[int] | None = None):
    """Per track: (name, General MIDI program, is_drum). A band (``track_mode="program"``) gets
    :data:`BAND_PROGRAMS` and drums on channel 10; other layouts get ``programs`` (cycled), by
    default Choir Aahs for every voice."""
    out = []
    for t in range(n_tracks):
        name = fc.track_names[t] if t < len(fc.track_names) else f"track{t}"
        if programs:
            out.append((name, programs[t % len(programs)], False))
        elif fc.track_mode == "program" and name in BAND_PROGRAMS:
            out.append((name, BAND_PROGRAMS[name], name == "drums"))
        else:
            out.append((name, SATB_PROGRAM, False))
    return out


def _track_notes(track_roll: np.ndarray, is_drum: bool):
    return drum_hits(track_roll) if is_drum else roll_notes(track_roll)


def roll_to_pretty_midi(roll: np.ndarray, fc: FeatureConfig, tempo_qpm: float = 100.0,
                        programs: list[int] | None = None, velocity: int = 90):
    """``[tracks, steps, pitches]`` binary roll -> ``pretty_midi.PrettyMIDI`` (one instrument a track,
    as :func:`track_instruments` says)."""
    import pretty_midi

    step_s = 60.0 / tempo_qpm / (fc.steps_per_bar // 4)
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_qpm)
    for t, (name, program, is_drum) in enumerate(track_instruments(fc, roll.shape[0], programs)):
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        for p, s, e in zip(*_track_notes(roll[t], is_drum)):
            inst.notes.append(pretty_midi.Note(velocity, fc.pitch_low + int(p), s * step_s, e * step_s))
        pm.instruments.append(inst)
    return pm


def roll_to_midi_bytes(roll: np.ndarray, fc: FeatureConfig, tempo_qpm: float = 100.0,
                       programs: list[int] | None = None, velocity: int = 90) -> bytes:
    """The same MIDI as :func:`roll_to_pretty_midi`, as file bytes, through symusic (about 10x faster:
    this is on every served request)."""
    from symusic import Note, Score, Tempo, Track

    tpq = 480
    ticks_per_step = tpq * 4 // fc.steps_per_bar
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm=float(tempo_qpm)))
    for t, (name, program, is_drum) in enumerate(track_instruments(fc, roll.shape[0], programs)):
        track = Track(name=name, program=program, is_drum=is_drum)
        p, s, e = _track_notes(roll[t], is_drum)
        order = np.lexsort((p, s))  # by start, then pitch: the order a MIDI file plays them
        track.notes.extend(Note.from_numpy((s[order] * ticks_per_step).astype(np.int32),
                                           ((e - s)[order] * ticks_per_step).astype(np.int32),
                                           (fc.pitch_low + p[order]).astype(np.int8),
                                           np.full(len(p), velocity, dtype=np.int8)))
        score.tracks.append(track)
    return score.dumps_midi()
