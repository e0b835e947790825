"""MIDI bytes -> multi-track binary pianoroll phrases. This is the ingest hot path.

symusic parses MIDI in C++ (about 130x faster than pretty_midi here), and the roll is filled
with numpy on an integer tick grid, so no float rounding can move a note. pretty_midi stays the
library for MIDI objects handed to users (:func:`roll_to_pretty_midi`).

Grid: ``steps_per_bar`` steps per 4/4 bar, i.e. ``steps_per_bar / 4`` steps per quarter note,
whatever the tempo. A note covers steps ``floor(start)`` up to, not including, ``floor(end)``,
the same rule as ``pretty_midi.PrettyMIDI.get_piano_roll``. Phrases start on downbeats of the
first time signature (time 0 is taken as a downbeat) and are ``bars * steps_per_bar`` long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musicgan.config import FeatureConfig

VALID_DENOMINATORS = (1, 2, 4, 8, 16, 32, 64)


class BadInput(Exception):
    """A file that cannot become training data; the message is the reason kept in the manifest."""


@dataclass
class FileResult:
    """What one MIDI file gave: phrases ``[N, tracks, steps, pitches]`` plus bookkeeping."""

    phrases: np.ndarray
    start_bars: np.ndarray
    transposes: np.ndarray
    n_steps: int
    phrases_out_of_range: int = 0
    phrases_too_sparse: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_midi(data: bytes, fc: FeatureConfig):
    """Parse MIDI bytes with symusic; any parser complaint becomes :class:`BadInput`."""
    import symusic

    if len(data) == 0:
        raise BadInput("empty file (0 bytes)")
    if len(data) > fc.max_file_bytes:
        raise BadInput(f"file too large ({len(data)} bytes > max_file_bytes {fc.max_file_bytes})")
    if data[:4] != b"MThd":
        raise BadInput("not a MIDI file (no 'MThd' header)")
    try:
        return symusic.Score.from_midi(data)
    except Exception as e:  # symusic raises RuntimeError with a readable message
        raise BadInput(f"unreadable MIDI: {str(e).splitlines()[0][:200]}") from None


def bar_steps_of(score, fc: FeatureConfig) -> int:
    """Steps per bar of the first time signature; absurd signatures are :class:`BadInput`."""
    sigs = score.time_signatures
    for ts in sigs:
        if not (1 <= ts.numerator <= 64) or ts.denominator not in VALID_DENOMINATORS:
            raise BadInput(f"invalid time signature {ts.numerator}/{ts.denominator}")
    if len(sigs) == 0:
        return fc.steps_per_bar
    first = sigs[0]
    steps = fc.steps_per_bar * first.numerator / first.denominator
    if steps != int(steps) or steps < 1:
        raise BadInput(
            f"time signature {first.numerator}/{first.denominator} does not fit a grid of "
            f"{fc.steps_per_bar} steps per bar"
        )
    return int(steps)


def track_groups(score, fc: FeatureConfig) -> list[list]:
    """Which symusic tracks feed each output track."""
    melodic = [t for t in score.tracks if not t.is_drum and t.note_num() > 0]
    if fc.track_mode == "merge":
        return [melodic]
    groups: list[list] = [[] for _ in range(fc.n_tracks)]
    for i, track in enumerate(melodic[: fc.n_tracks]):
        groups[i].append(track)
    return groups


def score_to_roll(score, fc: FeatureConfig) -> np.ndarray:
    """Full-length roll ``[tracks, steps, 128]`` (all pitches; cropping happens per phrase)."""
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise BadInput(f"invalid ticks per quarter note ({tpq})")
    groups = track_groups(score, fc)
    if not any(groups):
        raise BadInput("no notes")
    steps_per_quarter = fc.steps_per_bar // 4
    tracks, starts, ends, pitches = [], [], [], []
    for i, group in enumerate(groups):
        for track in group:
            notes = track.notes.numpy()
            t0 = notes["time"].astype(np.int64)
            # step = floor(tick * steps_per_quarter / tpq), in integers: no float can move a note
            starts.append(t0 * steps_per_quarter // tpq)
            ends.append((t0 + notes["duration"]) * steps_per_quarter // tpq)
            pitches.append(notes["pitch"])
            tracks.append(np.full(len(t0), i, np.int64))
    s, e = np.concatenate(starts), np.concatenate(ends)
    n_steps = int(e.max(initial=0))
    if n_steps > fc.max_steps_per_file:
        raise BadInput(f"too long ({n_steps} steps > max_steps_per_file {fc.max_steps_per_file})")
    if s.size and s.min() < 0:
        raise BadInput("negative note time")
    lens = np.maximum(e - s, 0)
    # One fancy-index write for every (track, step, pitch) cell any note covers.
    total = int(lens.sum())
    within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    roll = np.zeros((len(groups), n_steps, 128), bool)
    roll[np.repeat(np.concatenate(tracks), lens), np.repeat(s, lens) + within,
         np.repeat(np.concatenate(pitches), lens)] = True
    return roll


def cut_phrases(roll: np.ndarray, bar_steps: int, fc: FeatureConfig) -> FileResult:
    """Cut a full roll into phrases on downbeats, once per transposition, cropped to the pitch range.

    Works from per-step summaries (sounding or not, lowest and highest pitch) so that only the
    phrases that are kept are ever copied, whatever the file's length.
    """
    length = fc.steps_per_phrase
    n_tracks, n_steps, _ = roll.shape
    hop = fc.hop_bars * bar_steps
    empty = FileResult(np.zeros((0, n_tracks, length, fc.n_pitches), bool), np.zeros(0, np.int32),
                       np.zeros(0, np.int8), n_steps)
    if n_steps < length:
        return empty
    starts = np.arange(0, n_steps - length + 1, hop)
    sounding = roll.any(axis=0)  # [steps, 128]
    active = sounding.any(axis=1)
    low = np.where(active, sounding.argmax(axis=1), 999)
    high = np.where(active, 127 - sounding[:, ::-1].argmax(axis=1), -1)
    active_count = np.concatenate([[0], np.cumsum(active)])
    dense = (active_count[starts + length] - active_count[starts]) >= fc.min_active_fraction * length
    win_low = np.lib.stride_tricks.sliding_window_view(low, length)[starts].min(axis=1)
    win_high = np.lib.stride_tricks.sliding_window_view(high, length)[starts].max(axis=1)
    result = FileResult(*(x for x in (empty.phrases, empty.start_bars, empty.transposes)), n_steps)
    result.phrases_too_sparse = int((~dense).sum()) * len(fc.transpose)
    out, bars, shifts = [], [], []
    for shift in fc.transpose:
        lo, hi = fc.pitch_low - shift, fc.pitch_high - shift  # source pitches that land in range
        fits = dense & (win_low >= lo) & (win_high < hi)
        result.phrases_out_of_range += int((dense & ~fits).sum())
        if fits.any():
            out.extend(roll[:, st : st + length, lo:hi] for st in starts[fits])
            bars.append(starts[fits] // bar_steps)
            shifts.append(np.full(int(fits.sum()), shift, np.int8))
    if out:
        result.phrases = np.stack(out)
        result.start_bars = np.concatenate(bars).astype(np.int32)
        result.transposes = np.concatenate(shifts)
    return result


def midi_to_phrases(data: bytes, fc: FeatureConfig) -> FileResult:
    """The whole per-file feature extraction: parse, roll, phrases. Raises :class:`BadInput`."""
    score = parse_midi(data, fc)
    bar_steps = bar_steps_of(score, fc)
    warnings = []
    mspq = score.tempos.numpy()["mspq"] if len(score.tempos) else np.zeros(0)
    if mspq.size and (mspq.min() < 60_000 or mspq.max() > 12_000_000):
        # Outside 5..1000 qpm. The grid is in ticks, so tempo cannot break the roll: keep the file.
        warnings.append("absurd tempo ignored (the step grid is tempo-free)")
    roll = score_to_roll(score, fc)
    result = cut_phrases(roll, bar_steps, fc)
    result.warnings = warnings
    return result


def pianoroll_of_file(data: bytes, fc: FeatureConfig) -> np.ndarray:
    """Full-length ``[tracks, steps, pitch_high - pitch_low]`` roll (for tests and plotting)."""
    score = parse_midi(data, fc)
    return score_to_roll(score, fc)[..., fc.pitch_low : fc.pitch_high]


# ---------------------------------------------------------------------------------------------
# back to MIDI, for users


def roll_to_pretty_midi(roll: np.ndarray, fc: FeatureConfig, tempo_qpm: float = 100.0,
                        programs: list[int] | None = None, velocity: int = 90):
    """``[tracks, steps, pitches]`` binary roll -> ``pretty_midi.PrettyMIDI`` (one instrument a track).

    Consecutive sounding steps of a pitch become one note (the roll has no onset channel).
    """
    import pretty_midi

    roll = np.asarray(roll).astype(bool)
    step_s = 60.0 / tempo_qpm / (fc.steps_per_bar // 4)
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_qpm)
    programs = programs or [52, 52, 52, 52]  # "Choir Aahs" for SATB
    for t in range(roll.shape[0]):
        name = fc.track_names[t] if t < len(fc.track_names) else f"track{t}"
        inst = pretty_midi.Instrument(program=programs[t % len(programs)], name=name)
        padded = np.pad(roll[t], ((1, 1), (0, 0)))
        change = np.diff(padded.astype(np.int8), axis=0)
        for p in range(roll.shape[2]):
            ons = np.flatnonzero(change[:, p] == 1)
            offs = np.flatnonzero(change[:, p] == -1)
            for s, e in zip(ons, offs):
                inst.notes.append(pretty_midi.Note(velocity, fc.pitch_low + p, s * step_s, e * step_s))
        pm.instruments.append(inst)
    return pm
