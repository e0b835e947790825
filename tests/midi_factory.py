"""Hand-built MIDI files with known contents, for tests."""

from __future__ import annotations

import io

import mido


def midi_bytes(tracks: list[list[tuple[int, int, int]]], tpq: int = 480, numerator: int = 4, denominator: int = 4,
               tempo_us: int = 500_000, extra_meta: list | None = None) -> bytes:
    """``tracks``: per track, notes as ``(start_tick, end_tick, pitch)``. Returns MIDI bytes (type 1)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpq)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=tempo_us, time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0))
    for msg in extra_meta or []:
        meta.append(msg)
    mid.tracks.append(meta)
    for notes in tracks:
        events = []
        for start, end, pitch in notes:
            events.append((start, 1, mido.Message("note_on", note=pitch, velocity=90)))
            events.append((end, 0, mido.Message("note_off", note=pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1]))
        track, now = mido.MidiTrack(), 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
