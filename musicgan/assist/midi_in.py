"""A user's MIDI file (or JSON note list) on the model's grid: a melody to harmonize, or a piece to
continue or fill in.

The model knows one grid (``steps_per_bar`` steps per 4/4 bar, pitches ``pitch_low..pitch_high-1``)
and monophonic voices, so input is reduced to that: each track keeps its top line, onsets and ends
round to the nearest step, and the whole input is transposed by the smallest shift that fits the
range the model learned. The shift is kept, and :func:`output_feature_config` undoes it on the way
out, so the user hears the result in their own key.

Everything a user can get wrong (not MIDI, no notes, an unsupported meter, too long, too wide) is a
:class:`MidiInputError` with a one-line message saying what is wrong and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicgan.config import FeatureConfig, from_dict
from musicgan.errors import UserError

MAX_INPUT_BYTES = 1024 * 1024
"""Largest MIDI file read by default; a melody or a chorale is a few kB."""
MAX_JSON_NOTES = 20_000
"""Most notes in one JSON note list (a 64-bar melody in four-note chords of sixteenths is 16,384)."""
DEFAULT_MIDI_QPM = 120.0
"""MIDI's tempo when a file sets none."""
SUPPORTED_METERS = ((4, 4), (2, 2))
"""Meters whose bar is four quarter notes: the grid's bar (C and alla breve, as in the chorales)."""

_NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


class MidiInputError(UserError, ValueError):
    """A user's melody or piece that cannot go on the model's grid; the message says why and what is allowed."""


@dataclass
class Melody:
    """One voice on the model's grid, transposed into the target voice's range."""

    line: np.ndarray
    """int16 ``[steps]``: index on the model's pitch axis (MIDI pitch - pitch_low, transposed); -1 = rest."""
    transpose_semitones: int
    """What was added to the user's pitches; subtract it to get back to the user's key."""
    tempo_qpm: float
    n_bars: int
    time_signature: tuple[int, int]
    track: str
    """The source track's name, or ``track N`` (N: its index among the file's non-drum tracks with notes)."""
    warnings: list[str] = field(default_factory=list)

    def roll(self, n_tracks: int, track_index: int, n_pitches: int) -> np.ndarray:
        """bool ``[n_tracks, steps, n_pitches]`` with the line in ``track_index`` and the other tracks empty."""
        if not 0 <= track_index < n_tracks:
            raise ValueError(f"track_index {track_index} is outside 0..{n_tracks - 1}")
        if self.line.max(initial=-1) >= n_pitches:
            raise ValueError(f"the line reaches pitch index {int(self.line.max())}, beyond {n_pitches} pitches")
        out = np.zeros((n_tracks, len(self.line), n_pitches), bool)
        steps = np.nonzero(self.line >= 0)[0]
        out[track_index, steps, self.line[steps]] = True
        return out


@dataclass
class Piece:
    """Several voices on the model's grid, transposed together into the model's pitch range."""

    roll: np.ndarray
    """bool ``[n_tracks, steps, n_pitches]``; each track monophonic."""
    present: list[bool]
    """Which of the model's tracks got a source track (False: left empty, for the model to write)."""
    transpose_semitones: int
    tempo_qpm: float
    n_bars: int
    time_signature: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


def note_name(midi_pitch: int) -> str:
    """``60 -> C4`` (scientific pitch notation, as pretty_midi names them)."""
    return f"{_NOTE_NAMES[midi_pitch % 12]}{midi_pitch // 12 - 1}"


def output_feature_config(data: dict, transpose_semitones: int) -> FeatureConfig:
    """The data's FeatureConfig with its pitch range moved by ``-transpose_semitones``: a roll written
    with it (``roll_to_pretty_midi``) sounds in the user's original key."""
    fc = _feature_config(data)
    return dataclasses.replace(fc, pitch_low=fc.pitch_low - transpose_semitones,
                               pitch_high=fc.pitch_high - transpose_semitones)


# ---------------------------------------------------------------------------------------------
# MIDI files


def read_melody(source, data: dict, voice_range: tuple[int, int], track: int | str | None = None,
                max_bars: int = 64, max_bytes: int = MAX_INPUT_BYTES) -> Melody:
    """One track of a MIDI file as a melody for the voice whose MIDI range is ``voice_range`` (inclusive).

    ``track``: index among the file's non-drum tracks with notes, or a track name (any case); default the
    first of them. Steps count from the file's time 0, so a pickup keeps its place in the bar.
    """
    grid = _Grid(data)
    low, high = grid.check_voice_range(voice_range)
    score = _parse(source, max_bytes)
    time_signature = _time_signature(score)
    tracks = _note_tracks(score)
    index = _choose_track(tracks, track)
    name, notes = tracks[index]
    start, end, pitch = _ticks_to_steps(notes, int(score.ticks_per_quarter), grid.steps_per_quarter)
    n_steps = _whole_bars(int(end.max()), grid, max_bars, f"the melody (track {name!r})")
    line, chords = _top_line(start, end, pitch, n_steps)
    shift = _fit_shift(line, low, high, grid, f"the melody (track {name!r})", "the voice range")
    warnings = [f"track {name!r} has chords; the melody is their top notes"] if chords else []
    return Melody(_on_axis(line, shift, grid), shift, _tempo_qpm(score), len(line) // grid.steps_per_bar,
                  time_signature, name, warnings)


def read_piece(source, data: dict, max_bars: int = 64, max_bytes: int = MAX_INPUT_BYTES) -> Piece:
    """A multi-voice MIDI file as a roll: its i-th non-drum track with notes becomes the model's track i
    (as the data build's ``index`` track mode reads files), each reduced to its top line."""
    grid = _Grid(data)
    score = _parse(source, max_bytes)
    time_signature = _time_signature(score)
    tracks = _note_tracks(score)
    tpq = int(score.ticks_per_quarter)
    voices = [(name, *_ticks_to_steps(notes, tpq, grid.steps_per_quarter)) for name, notes in tracks]
    return _piece(voices, grid, max_bars, _tempo_qpm(score), time_signature)


def _parse(source, max_bytes: int):
    """bytes or a path -> symusic Score, with the size checked before anything is parsed."""
    from musicgan.data.pianoroll import BadInput, parse_midi

    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        size = len(raw)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MidiInputError(f"no MIDI file at {str(path)!r}")
        size = path.stat().st_size
        raw = None
    else:
        raise TypeError(f"source must be MIDI bytes or a file path, not {type(source).__name__}")
    if size > max_bytes:
        raise MidiInputError(f"the MIDI file is {size} bytes; at most {max_bytes} bytes are accepted")
    if raw is None:
        raw = path.read_bytes()
    try:
        return parse_midi(raw, FeatureConfig(max_file_bytes=max_bytes))
    except BadInput as e:
        raise MidiInputError(f"not a readable MIDI file: {e}") from None


def _time_signature(score) -> tuple[int, int]:
    """The file's meter, which must keep a bar of four quarter notes throughout; none means 4/4."""
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MidiInputError(f"not a readable MIDI file: invalid ticks per quarter note ({tpq})")
    first = None
    for ts in sorted(score.time_signatures, key=lambda ts: ts.time):
        meter = (int(ts.numerator), int(ts.denominator))
        if meter not in SUPPORTED_METERS:
            # Every earlier signature had four-quarter bars, so the bar number is plain division.
            quarters = ts.time / tpq
            bar = int(quarters // 4) + 1
            supported = " and ".join(f"{n}/{d}" for n, d in SUPPORTED_METERS)
            raise MidiInputError(
                f"time signature {meter[0]}/{meter[1]} at bar {bar} (quarter note {quarters:g} from the start) "
                f"is not supported; supported: {supported} (bars of four quarter notes)")
        first = first or meter
    return first or (4, 4)


def _tempo_qpm(score) -> float:
    """The file's first tempo; the output is written at it."""
    if not len(score.tempos):
        return DEFAULT_MIDI_QPM
    qpm = float(min(score.tempos, key=lambda t: t.time).qpm)
    if not (math.isfinite(qpm) and qpm > 0):
        raise MidiInputError(f"the file's tempo ({qpm} quarter notes per minute) is not usable; it must be positive")
    return qpm


def _note_tracks(score) -> list[tuple[str, dict]]:
    """The non-drum tracks with notes, in file order, as (name or ``track N``, notes as numpy arrays)."""
    out = []
    for track in score.tracks:
        if track.is_drum:
            continue
        notes = track.notes.numpy()
        if len(notes["time"]) == 0:
            continue
        name = track.name.strip() or f"track {len(out)}"
        out.append((name, notes))
    if not out:
        raise MidiInputError("the MIDI file has no notes (drum tracks are not read); give a file with a melody")
    return out


def _choose_track(tracks: list[tuple[str, dict]], track: int | str | None) -> int:
    """``track`` (index, name in any case, or None for the first) -> index into ``tracks``."""
    if track is None:
        return 0
    names = [name for name, _ in tracks]
    listing = ", ".join(f"{i}: {name!r}" for i, name in enumerate(names))
    if isinstance(track, str):
        wanted = track.strip().lower()
        for i, name in enumerate(names):
            if name.lower() == wanted or f"track {i}" == wanted:
                return i
        if wanted.isdigit():  # "1" from a form or a query string means the index
            track = int(wanted)
        else:
            raise MidiInputError(f"no track named {track!r}; the tracks with notes are {listing}")
    if isinstance(track, bool) or not isinstance(track, (int, np.integer)):
        raise MidiInputError(f"track must be an index or a name, not {track!r}; the tracks with notes are {listing}")
    if not 0 <= track < len(tracks):
        raise MidiInputError(f"no track {track} (tracks are counted from 0); the tracks with notes are {listing}")
    return int(track)


def _ticks_to_steps(notes: dict, tpq: int, steps_per_quarter: int):
    """Onsets and ends rounded to the nearest step (halves round up), in integers so no float moves a
    note; a note keeps at least one step."""
    t0 = notes["time"].astype(np.int64)
    t1 = t0 + notes["duration"].astype(np.int64)
    if t0.min() < 0:
        raise MidiInputError("not a readable MIDI file: a note starts before time 0")
    start = (2 * t0 * steps_per_quarter + tpq) // (2 * tpq)
    end = np.maximum((2 * t1 * steps_per_quarter + tpq) // (2 * tpq), start + 1)
    return start, end, notes["pitch"].astype(np.int64)


# ---------------------------------------------------------------------------------------------
# JSON note lists


def melody_from_notes(notes: list[dict], data: dict, voice_range: tuple[int, int], max_bars: int = 64,
                      tempo_qpm: float = 90.0) -> Melody:
    """``[{"pitch": 60, "start_beat": 0, "duration_beats": 1}, ...]`` (beats = quarter notes) as a melody,
    by the same rules as :func:`read_melody`."""
    grid = _Grid(data)
    low, high = grid.check_voice_range(voice_range)
    tempo_qpm = _check_tempo(tempo_qpm)
    start, end, pitch = _beats_to_steps(notes, grid.steps_per_quarter, "notes")
    line, chords = _top_line(start, end, pitch, _whole_bars(int(end.max()), grid, max_bars, "the melody"))
    shift = _fit_shift(line, low, high, grid, "the melody", "the voice range")
    warnings = ["the notes have chords; the melody is their top notes"] if chords else []
    return Melody(_on_axis(line, shift, grid), shift, tempo_qpm, len(line) // grid.steps_per_bar, (4, 4),
                  "notes", warnings)


def piece_from_notes(voices: list[list[dict]], data: dict, max_bars: int = 64, tempo_qpm: float = 90.0) -> Piece:
    """One note list per voice (highest voice first, as the model's tracks) as a piece, by the rules of
    :func:`read_piece`; an empty list leaves that voice to the model."""
    grid = _Grid(data)
    tempo_qpm = _check_tempo(tempo_qpm)
    if not isinstance(voices, list) or not all(isinstance(v, list) for v in voices):
        raise MidiInputError("voices must be a list of note lists, one per voice")
    parsed = []
    for i, notes in enumerate(voices):
        if notes:
            parsed.append((f"voice {i}", *_beats_to_steps(notes, grid.steps_per_quarter, f"voice {i}")))
        elif i < grid.n_tracks:
            parsed.append((f"voice {i}", None, None, None))
    if all(p[1] is None for p in parsed):
        raise MidiInputError("the voices have no notes; give at least one note")
    return _piece(parsed, grid, max_bars, tempo_qpm, (4, 4))


def _check_tempo(tempo_qpm) -> float:
    if isinstance(tempo_qpm, bool) or not isinstance(tempo_qpm, (int, float)) or not (
            math.isfinite(tempo_qpm) and 0 < tempo_qpm <= 1000):
        raise MidiInputError(f"tempo_qpm must be a number of quarter notes per minute in (0, 1000], not {tempo_qpm!r}")
    return float(tempo_qpm)


def _beats_to_steps(notes, steps_per_quarter: int, what: str):
    """Validated JSON notes -> (start, end, pitch) step arrays, rounded as :func:`_ticks_to_steps` rounds."""
    if not isinstance(notes, list):
        raise MidiInputError(
            f"{what} must be a list of notes like {{'pitch': 60, 'start_beat': 0, 'duration_beats': 1}}")
    if not notes:
        raise MidiInputError(f"{what} has no notes; give at least one note")
    if len(notes) > MAX_JSON_NOTES:
        raise MidiInputError(f"{what} has {len(notes)} notes; at most {MAX_JSON_NOTES} are accepted")
    start, end, pitch = [], [], []
    for i, note in enumerate(notes):
        if not isinstance(note, dict):
            raise MidiInputError(f"{what}, note {i}: must be an object with pitch, start_beat and duration_beats")
        missing = [k for k in ("pitch", "start_beat", "duration_beats") if k not in note]
        if missing:
            raise MidiInputError(f"{what}, note {i}: missing {', '.join(missing)} "
                                 "(each note needs pitch, start_beat and duration_beats)")
        p, s, d = note["pitch"], note["start_beat"], note["duration_beats"]
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 127:
            raise MidiInputError(f"{what}, note {i}: pitch must be an integer MIDI pitch 0..127, not {p!r}")
        if not _is_number(s) or not s >= 0:
            raise MidiInputError(f"{what}, note {i}: start_beat must be a number >= 0 (quarter notes), not {s!r}")
        if not _is_number(d) or not d > 0:
            raise MidiInputError(f"{what}, note {i}: duration_beats must be a number > 0 (quarter notes), not {d!r}")
        s0 = math.floor(s * steps_per_quarter + 0.5)
        start.append(s0)
        end.append(max(math.floor((s + d) * steps_per_quarter + 0.5), s0 + 1))
        pitch.append(p)
    return np.array(start, np.int64), np.array(end, np.int64), np.array(pitch, np.int64)


def _is_number(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------
# shared: the grid, top lines, transposition


class _Grid:
    """The few numbers of the checkpoint's data dict that input needs."""

    def __init__(self, data: dict):
        fc = _feature_config(data)
        self.steps_per_bar = int(data.get("steps_per_bar", fc.steps_per_bar))
        self.steps_per_quarter = self.steps_per_bar // 4
        self.pitch_low = int(data.get("pitch_low", fc.pitch_low))
        self.pitch_high = int(fc.pitch_high)
        self.track_names = list(data.get("track_names") or fc.track_names)
        self.n_tracks = len(self.track_names)
        self.n_pitches = self.pitch_high - self.pitch_low

    def check_voice_range(self, voice_range) -> tuple[int, int]:
        """The caller's voice range must lie on the model's pitch axis (a programming error otherwise)."""
        low, high = (int(v) for v in voice_range)
        if not self.pitch_low <= low <= high < self.pitch_high:
            raise ValueError(f"voice_range {voice_range} must lie within the model's pitches "
                             f"{self.pitch_low}..{self.pitch_high - 1}")
        return low, high


def _feature_config(data: dict) -> FeatureConfig:
    return from_dict(FeatureConfig, data["feature_config"])


def _whole_bars(last_end_step: int, grid: _Grid, max_bars: int, what: str) -> int:
    """Steps of the whole bars that hold everything up to ``last_end_step``; too many bars is an error."""
    n_bars = max(1, -(-int(last_end_step) // grid.steps_per_bar))
    if n_bars > max_bars:
        raise MidiInputError(f"{what} is {n_bars} bars long; at most {max_bars} bars are accepted")
    return n_bars * grid.steps_per_bar


def _top_line(start, end, pitch, n_steps: int) -> tuple[np.ndarray, bool]:
    """The highest sounding MIDI pitch at each step (-1: rest), and whether chords were seen."""
    # A note adds +1 at its start and -1 at its end; the running sum says which pitches sound.
    count = np.zeros((n_steps + 1, 128), np.int32)
    np.add.at(count, (start, pitch), 1)
    np.add.at(count, (end, pitch), -1)
    sounding = np.cumsum(count, axis=0)[:n_steps] > 0
    top = 127 - np.argmax(sounding[:, ::-1], axis=1)
    line = np.where(sounding.any(axis=1), top, -1)
    return line, bool((sounding.sum(axis=1) > 1).any())


def _fit_shift(line: np.ndarray, low: int, high: int, grid: _Grid, what: str, target: str) -> int:
    """The smallest-|s| shift (0 first, then upward on a tie) that puts every pitch of ``line`` in
    ``low..high`` (inclusive) and keeps the model's whole pitch axis, shifted back, inside MIDI's 0..127
    (the other voices are written there)."""
    notes = line[line >= 0]
    lo, hi = int(notes.min()), int(notes.max())
    if hi - lo > high - low:
        raise MidiInputError(
            f"{what} spans {note_name(lo)}..{note_name(hi)} ({hi - lo} semitones), wider than {target} "
            f"{note_name(low)}..{note_name(high)} ({high - low} semitones); move notes by octaves to narrow it")
    s_min, s_max = low - lo, high - hi
    midi_min, midi_max = grid.pitch_high - 128, grid.pitch_low
    if s_max < midi_min or s_min > midi_max:
        raise MidiInputError(
            f"{what} lies at {note_name(lo)}..{note_name(hi)}, too far from {target} "
            f"{note_name(low)}..{note_name(high)} to transpose back within "
            "MIDI's pitches 0..127; move it by octaves toward the range")
    s_min, s_max = max(s_min, midi_min), min(s_max, midi_max)
    return 0 if s_min <= 0 <= s_max else (s_min if s_min > 0 else s_max)


def _on_axis(line: np.ndarray, shift: int, grid: _Grid) -> np.ndarray:
    """MIDI pitches -> transposed pitch indices on the model's axis (rests stay -1)."""
    return np.where(line >= 0, line + shift - grid.pitch_low, -1).astype(np.int16)


def _piece(voices: list[tuple], grid: _Grid, max_bars: int, tempo_qpm: float,
           time_signature: tuple[int, int]) -> Piece:
    """``(name, start, end, pitch)`` per source voice (None arrays: no notes) -> a Piece, voice i on track i."""
    warnings = []
    kept, extra = voices[: grid.n_tracks], voices[grid.n_tracks:]
    extra = [v for v in extra if v[1] is not None]
    if extra:
        warnings.append(f"{len(extra)} extra track(s) ignored ({', '.join(repr(v[0]) for v in extra)}): the model "
                        f"has {grid.n_tracks} voices ({', '.join(grid.track_names)}), filled by the first tracks")
    with_notes = [(t, v) for t, v in enumerate(kept) if v[1] is not None]
    last_end = max(int(v[2].max()) for _, v in with_notes)
    n_steps = _whole_bars(last_end, grid, max_bars, "the piece")
    lines = {}
    for t, (name, start, stop, pitch) in with_notes:
        lines[t], chords = _top_line(start, stop, pitch, n_steps)
        if chords:
            warnings.append(f"track {name!r} has chords; kept its top notes (the model's voices sound one note each)")
    all_notes = np.concatenate([line[line >= 0] for line in lines.values()])
    shift = _fit_shift(all_notes, grid.pitch_low, grid.pitch_high - 1, grid, "the piece", "the model's pitch range")
    roll = np.zeros((grid.n_tracks, n_steps, grid.n_pitches), bool)
    present = [False] * grid.n_tracks
    for t, line in lines.items():
        line = _on_axis(line, shift, grid)
        steps = np.nonzero(line >= 0)[0]
        roll[t, steps, line[steps]] = True
        present[t] = True
    return Piece(roll, present, shift, tempo_qpm, n_steps // grid.steps_per_bar, time_signature, warnings)
