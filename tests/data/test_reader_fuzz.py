"""Property-based tests of the MIDI reader: whatever bytes arrive, the only exception is :class:`BadInput`.

A data build reads files it has never seen. :func:`midi_to_phrases` must turn every bad file
into a skip reason (``BadInput``), never another exception, so one file cannot sink a build.
The inputs are random bytes, random bytes behind a real header, and real MIDI files with bytes
flipped, inserted, deleted or cut off (so the parser gets past the header and into the tracks).
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from musicgan.config import FeatureConfig
from musicgan.data.pianoroll import BadInput, midi_to_phrases
from tests.midi_factory import midi_bytes

STEP = 120
FC = FeatureConfig(max_steps_per_file=20_000)
FC_LOOSE = FeatureConfig(bars=1, min_active_fraction=0.0, max_steps_per_file=20_000, transpose=[0, 12])
FC_TRANSPOSED = FeatureConfig(transpose=[-2, 0, 2], track_names=["m"], track_mode="merge", bars=2)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _real_midi() -> bytes:
    """Four voices over 8 bars, a tempo change and a meter: small, so mutations hit every part."""
    tracks = [[(i * 4 * STEP, (i + 1) * 4 * STEP, 48 + 7 * t + i % 5) for i in range(32)] for t in range(4)]
    return midi_bytes(tracks)


REAL = _real_midi()


def _outcome(data: bytes, fc: FeatureConfig) -> str:
    """Read ``data``; return ``"ok"`` or ``"skipped"``. Anything else propagates and fails the test."""
    try:
        result = midi_to_phrases(data, fc)
    except BadInput as e:
        assert str(e), "a skip needs a reason"
        return "skipped"
    n = len(result.phrases)
    assert result.phrases.shape == (n, fc.steps_per_phrase, fc.n_tracks, fc.n_pitches)
    assert result.phrases.dtype == np.bool_
    assert len(result.start_bars) == len(result.transposes) == n
    return "ok"


def test_the_unmutated_file_reads():
    assert _outcome(REAL, FC) == "ok" and len(midi_to_phrases(REAL, FC).phrases) == 5


@SETTINGS
@given(st.binary(max_size=2048))
@example(b"")
@example(b"MThd")
@example(b"MThd" + struct.pack(">IHHH", 6, 1, 1, 0))  # zero ticks per quarter, no track
def test_random_bytes_are_read_or_skipped(data):
    assert _outcome(data, FC) in ("ok", "skipped")


@SETTINGS
@given(st.binary(max_size=2048), st.integers(0, 2), st.integers(0, 65_535))
def test_random_tracks_behind_a_valid_header_are_read_or_skipped(body, fmt, division):
    header = b"MThd" + struct.pack(">IHHH", 6, fmt, 1 + len(body) % 4, division)
    assert _outcome(header + b"MTrk" + struct.pack(">I", len(body)) + body, FC) in ("ok", "skipped")


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


_event = st.tuples(st.integers(0, 480) | st.integers(0, 0x0FFFFFFF),  # delta time in ticks
                   st.sampled_from(["note", "note", "note", "drum", "control", "tempo"]),
                   st.integers(0, 127), st.integers(0, 127),
                   st.integers(0, 960) | st.integers(0, 0x0FFFFFFF))  # note length in ticks


def _track(events, tail: bytes) -> bytes:
    body = b""
    for delta, kind, a, b, length in events:
        if kind in ("note", "drum"):
            channel = 9 if kind == "drum" else 0
            body += _varlen(delta) + bytes([0x90 | channel, a, b]) + _varlen(length) + bytes([0x80 | channel, a, 0])
        elif kind == "control":
            body += _varlen(delta) + bytes([0xB0, a, b])
        else:
            body += _varlen(delta) + bytes([0xFF, 0x51, 3, a, b, 1])
    body += tail
    return b"MTrk" + struct.pack(">I", len(body)) + body


@SETTINGS
@given(st.lists(st.lists(_event, max_size=40), min_size=1, max_size=5), st.just(b"\x00\xff\x2f\x00") | st.binary(max_size=8),
       st.integers(1, 960))
def test_random_note_events_are_read_or_skipped(tracks, tail, tpq):
    """Well-formed chunks of random notes, drums, controllers and tempi: huge times and lengths, zero velocities."""
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), tpq)
    data = header + b"".join(_track(t, tail) for t in tracks)
    assert _outcome(data, FC) in ("ok", "skipped")
    assert _outcome(data, FC_LOOSE) in ("ok", "skipped")


_edit = st.one_of(
    st.tuples(st.just("set"), st.integers(0, len(REAL) - 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(REAL)), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, len(REAL) - 1), st.integers(1, 16)),
)


def _mutate(data: bytes, edits, cut: int | None) -> bytes:
    b = bytearray(data)
    for op, pos, arg in edits:
        pos = min(pos, len(b))
        if op == "set" and pos < len(b):
            b[pos] = arg
        elif op == "insert":
            b[pos:pos] = arg
        elif op == "delete":
            del b[pos : pos + arg]
    return bytes(b if cut is None else b[:cut])


@SETTINGS
@given(st.lists(_edit, min_size=1, max_size=8), st.none() | st.integers(0, len(REAL)))
@example([("set", 12, 0), ("set", 13, 0)], None)  # ticks per quarter 0
@example([("set", 12, 0x80), ("set", 13, 0x01)], None)  # SMPTE division
@example([("set", 18, 0xFF), ("set", 19, 0xFF), ("set", 20, 0xFF), ("set", 21, 0xFF)], None)  # track length 4 GiB
def test_mutated_real_midi_is_read_or_skipped(edits, cut):
    data = _mutate(REAL, edits, cut)
    assert _outcome(data, FC) in ("ok", "skipped")
    assert _outcome(data, FC_TRANSPOSED) in ("ok", "skipped")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_bach_chorales_are_read_or_skipped(bach_midi, data):
    """The same edits on real chorales from the music21 corpus (converted to MIDI, as the build reads them)."""
    original = data.draw(st.sampled_from(bach_midi[:6])).read_bytes()
    n = len(original)
    edits = data.draw(st.lists(st.one_of(
        st.tuples(st.just("set"), st.integers(0, n - 1), st.integers(0, 255)),
        st.tuples(st.just("insert"), st.integers(0, n), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), st.integers(0, n - 1), st.integers(1, 16))), min_size=1, max_size=8))
    cut = data.draw(st.none() | st.integers(0, n))
    assert _outcome(_mutate(original, edits, cut), FC) in ("ok", "skipped")
