"""The embedded ``notes`` source: an NSynth-like set of single notes, made offline.

A grid of pitches x General MIDI instruments x velocities. Each (instrument, velocity) is one MIDI
file of spaced single notes, rendered once by FluidSynth with the installed GM soundfont (the
synthesizer NSynth-style sets come from); without FluidSynth, a small additive synthesizer with one
harmonic recipe and envelope per instrument stands in, so the instruments still differ. Each note
is cut into its own WAV of exactly ``clip_seconds``, and ``labels.csv`` (``file,pitch,instrument``)
names its labels: the same label file a user's audio folder may carry.

The cache (``~/.cache/musicgan/notes/...``) is complete once ``labels.csv`` exists; it is written
last, through a temporary name.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

# General MIDI programs (0-based) of the instruments the grid may use, chosen to sound unlike each other
GM_PROGRAMS = {"piano": 0, "organ": 19, "guitar": 24, "bass": 33, "violin": 40, "trumpet": 56, "clarinet": 71,
               "flute": 73}
DEFAULT_INSTRUMENTS = ("piano", "guitar", "violin", "trumpet", "flute", "organ")
DEFAULT_VELOCITIES = (70, 110)
NOTE_FRACTION = 0.75  # a note sounds for this share of its clip; the rest holds its release
GAP_SECONDS = 0.5  # silence between rendered notes, so one note's release never reaches the next clip
LABELS_FILE = "labels.csv"

# Additive stand-in (no FluidSynth): relative amplitude of harmonics 1..8, and attack/decay in seconds
_RECIPES = {
    "piano": ([1, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02], 0.005, 0.6),
    "organ": ([1, 0.9, 0.1, 0.6, 0.05, 0.4, 0.02, 0.3], 0.03, 10.0),
    "guitar": ([1, 0.7, 0.4, 0.3, 0.2, 0.1, 0.05, 0.05], 0.003, 0.4),
    "bass": ([1, 0.4, 0.15, 0.05, 0.02, 0.0, 0.0, 0.0], 0.01, 0.8),
    "violin": ([1, 0.6, 0.5, 0.4, 0.35, 0.3, 0.2, 0.15], 0.08, 10.0),
    "trumpet": ([1, 0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2], 0.04, 10.0),
    "clarinet": ([1, 0.05, 0.6, 0.05, 0.4, 0.05, 0.2, 0.02], 0.04, 10.0),
    "flute": ([1, 0.2, 0.08, 0.03, 0.01, 0.0, 0.0, 0.0], 0.06, 10.0),
}


def check_instruments(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in GM_PROGRAMS]
    if unknown or not names:
        from musicgan.data.build import BuildError

        raise BuildError(f"unknown instrument(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(GM_PROGRAMS)}")
    return list(dict.fromkeys(names))


def synth_additive(pitch: int, instrument: str, velocity: int, seconds: float, sample_rate_hz: int) -> np.ndarray:
    """One note from the additive stand-in synthesizer (mono float32, peak about velocity/127 * 0.5)."""
    harmonics, attack_s, decay_s = _RECIPES[instrument]
    t = np.arange(int(round(seconds * sample_rate_hz))) / sample_rate_hz
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    y = np.zeros_like(t)
    for k, amp in enumerate(harmonics, start=1):
        if amp and k * f0 < sample_rate_hz / 2:
            y += amp * np.sin(2 * np.pi * k * f0 * t)
    env = np.minimum(t / attack_s, 1.0) * np.exp(-t / decay_s)
    held = seconds * NOTE_FRACTION
    env *= np.where(t < held, 1.0, np.exp(-(t - held) / 0.05))  # release
    y *= env
    return (0.5 * velocity / 127 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def _render_fluidsynth(instrument: str, velocity: int, pitches: list[int], clip_seconds: float,
                       sample_rate_hz: int) -> list[np.ndarray]:
    import pretty_midi

    from musicgan.data.audio import render_midi

    stride = clip_seconds + GAP_SECONDS
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=GM_PROGRAMS[instrument])
    for i, p in enumerate(pitches):
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=p, start=i * stride,
                                           end=i * stride + clip_seconds * NOTE_FRACTION))
    pm.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        pm.write(str(Path(tmp) / "notes.mid"))
        y = render_midi(Path(tmp) / "notes.mid", sample_rate_hz, backend="fluidsynth")
    n = int(round(clip_seconds * sample_rate_hz))
    y = np.pad(y, (0, max(0, int(round(len(pitches) * stride * sample_rate_hz)) + n - len(y))))
    return [y[int(round(i * stride * sample_rate_hz)):][:n] for i in range(len(pitches))]


def ensure_rendered(pitch_low: int, pitch_high: int, instruments: list[str], velocities: list[int],
                    clip_seconds: float, sample_rate_hz: int, progress: bool = True) -> tuple[Path, str]:
    """Render the grid once (cached); returns ``(folder with the WAVs and labels.csv, backend)``."""
    import soundfile as sf

    from musicgan.data.audio import synth_backend
    from musicgan.data.corpus import _progress, cache_root

    instruments = check_instruments(instruments)
    backend = synth_backend()
    spec = {"pitches": [pitch_low, pitch_high], "instruments": instruments, "velocities": list(velocities),
            "clip_seconds": clip_seconds, "sample_rate_hz": sample_rate_hz, "backend": backend,
            "note_fraction": NOTE_FRACTION, "version": 1}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_root() / "notes" / f"{backend}-{sample_rate_hz}hz-{key}"
    if (folder / LABELS_FILE).exists():
        return folder, backend
    folder.mkdir(parents=True, exist_ok=True)
    pitches = list(range(pitch_low, pitch_high))
    rows = []
    n = int(round(clip_seconds * sample_rate_hz))
    with _progress(len(instruments) * len(velocities), f"rendering notes ({backend})", progress) as bar:
        for name in instruments:
            for vel in velocities:
                if backend == "fluidsynth":
                    clips = _render_fluidsynth(name, vel, pitches, clip_seconds, sample_rate_hz)
                else:
                    clips = [synth_additive(p, name, vel, clip_seconds, sample_rate_hz) for p in pitches]
                for p, y in zip(pitches, clips):
                    rel = f"{name}/{name}-p{p:03d}-v{vel:03d}.wav"
                    (folder / name).mkdir(exist_ok=True)
                    sf.write(folder / rel, np.asarray(y[:n], np.float32), sample_rate_hz, subtype="PCM_16")
                    rows.append((rel, p, name))
                bar.update(1)
    tmp = folder / f".{LABELS_FILE}.tmp-{os.getpid()}"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "pitch", "instrument"])
        w.writerows(rows)
    os.replace(tmp, folder / LABELS_FILE)
    return folder, backend


def read_labels(text: str, where: str) -> dict[str, tuple[int, str]]:
    """``labels.csv`` text -> ``{relative file: (MIDI pitch, instrument name)}``; bad rows are an error."""
    from musicgan.data.build import BuildError

    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"file", "pitch", "instrument"} <= set(reader.fieldnames):
        raise BuildError(f"{where} must have the columns file,pitch,instrument (got {reader.fieldnames})")
    out = {}
    for i, row in enumerate(reader, start=2):
        try:
            pitch = int(row["pitch"])
        except (TypeError, ValueError):
            raise BuildError(f"{where} line {i}: pitch {row['pitch']!r} is not a MIDI number") from None
        if not 0 <= pitch < 128 or not (row["instrument"] or "").strip() or not row["file"]:
            raise BuildError(f"{where} line {i}: needs a file, a pitch in 0..127 and an instrument name")
        out[row["file"].strip()] = (pitch, row["instrument"].strip())
    return out
