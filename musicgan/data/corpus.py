"""The embedded default music: corpora that ship inside the ``music21`` wheel, as cached MIDI.

music21 parses MusicXML/Humdrum/ABC slowly (about 0.28 s a Bach chorale here), so each corpus
file is converted once, in parallel Ray tasks, into a cache of plain MIDI files that the fast
symusic path reads from then on. Every corpus file gets a small ``.done.json`` marker listing
what it produced (or why it produced nothing); a file with a marker is never converted again.

The MIDI is written so that time 0 is a downbeat: a pickup (anacrusis) bar is padded with rest,
which keeps the phrase grid on the barlines.

**Styles.** Besides the Bach chorales (whose parts are named S, A, T, B) the wheel holds
Palestrina's masses and motets (Humdrum, 4-6 voices), Monteverdi's madrigals (MusicXML, 5 voices,
some with a basso continuo) and string quartets by Haydn, Mozart and Beethoven. Their parts are
named anything (Canto, Quinto, Violin 1, ...), so they share one 4-track layout by register, the
tracks named soprano, alto, tenor, bass as for Bach so that one model fits every style:

1. each part is first reduced to its top line: at every moment the highest note sounding in that
   part (a string player's double stops and chords, or two voices written on one staff, keep the
   upper note; a lower note that outlasts a higher one goes on from the moment it is the highest);
2. parts with no notes are dropped; a piece with fewer than four parts left is skipped, with
   its reason in the manifest (doubling a part to make four would teach the model unisons);
3. parts are ordered by mean pitch (weighted by duration), highest first;
4. with more than four parts, the outer two (highest and lowest) are kept, plus the two inner
   parts whose mean pitches are nearest the middle of the texture: the midpoint of the outer two
   parts' mean pitches (ties go to the higher part). Keeping the outer voices keeps the melody and
   the harmonic bass; the middle parts are the ones most like a four-voice alto and tenor, whereas
   merging parts would put chords on a monophonic track. A Monteverdi continuo is a part like any
   other: it is usually the lowest, and then it is the bass.

Meters are left as they are, as for Bach: the grid counts sixteenth notes, whatever the meter,
and a phrase starts on each downbeat of the first time signature (see
:mod:`musicgan.data.pianoroll`). Palestrina is notated in half notes (4/2), so its phrases hold
fewer notes than Bach's; the manifest's per-style statistics show it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

SATB = ("soprano", "alto", "tenor", "bass")
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth")
REGISTER_SOURCES = ("palestrina", "monteverdi", "quartets")
"""Embedded sources laid out by register (see the module docstring)."""
STYLES = ("bach",) + REGISTER_SOURCES
"""The styles of ``--source styles``, in label order (a label's index is its position here)."""
EMBEDDED_MIDI_SOURCES = ("bach", "folk") + REGISTER_SOURCES
CONVERTER_VERSION = 2  # bump when the conversion of bach or folk changes what it writes
REGISTER_CONVERTER_VERSION = 1  # bump when the register layout changes what it writes
QUARTET_COMPOSERS = ("haydn", "mozart", "beethoven")
NOT_QUARTETS = ("mozart/k545",)
"""Folders among the quartet composers' that hold no string quartet (K. 545 is a piano sonata)."""


def cache_root() -> Path:
    return Path(os.environ.get("MUSICGAN_CACHE_DIR", Path.home() / ".cache" / "musicgan"))


def music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def corpus_cache_dir(source: str) -> Path:
    import music21

    version = REGISTER_CONVERTER_VERSION if source in REGISTER_SOURCES else CONVERTER_VERSION
    return cache_root() / "corpus" / f"{source}-music21_{music21.__version__}-v{version}"


def corpus_files(source: str) -> list[Path]:
    """The music21 corpus files that make up an embedded source, sorted (quartets: by composer, then sorted)."""
    root = music21_corpus_dir()
    if source == "bach":
        files = [p for p in (root / "bach").iterdir() if p.suffix in (".mxl", ".krn", ".xml")]
    elif source == "folk":
        files = [p for c in FOLK_COLLECTIONS for p in (root / c).rglob("*.abc")]
    elif source == "palestrina":
        files = list((root / "palestrina").glob("*.krn"))
    elif source == "monteverdi":
        # the .rntxt files are harmonic analyses; madrigal.3.1_old.mxl is an older copy of 3.1
        files = [p for p in (root / "monteverdi").glob("*.mxl") if not p.stem.endswith("_old")]
    elif source == "quartets":
        # Beethoven's op. 18 no. 1 is there twice (MusicXML and Humdrum): MusicXML is read, as everywhere else
        # in the composers' order (Haydn first: his short early movements are what a small ``limit`` takes)
        return [p for c in QUARTET_COMPOSERS for p in sorted((root / c).rglob("*.mxl"))
                if not any(p.relative_to(root).as_posix().startswith(x + "/") for x in NOT_QUARTETS)]
    else:
        raise ValueError(f"unknown embedded source {source!r}")
    return sorted(files)


def _marker(cache: Path, src: Path) -> Path:
    return cache / (_flat_name(src) + ".done.json")


def _flat_name(src: Path) -> str:
    """``haydn/opus74no1/movement1.mxl`` -> ``haydn__opus74no1__movement1.mxl``: unique within a cache
    (for the flat bach and folk folders this is the folder plus the name, as before)."""
    try:
        rel = src.relative_to(music21_corpus_dir()).parts
    except ValueError:  # a file outside the wheel's corpus (tests): its folder and name
        rel = (src.parent.name, src.name)
    return "__".join(rel)


def _write_atomic(path: Path, data: bytes) -> None:
    from musicgan.storage import resolve  # pyarrow only when a file is written

    resolve(path).write_bytes_atomic(data)


def _pickup_quarters(part) -> float:
    """Length of rest that puts the first full bar on a barline (0 when there is no pickup)."""
    measures = part.getElementsByClass("Measure")
    if not measures:
        return 0.0
    first = measures[0]
    missing = float(first.barDuration.quarterLength - first.duration.quarterLength)
    return missing if missing > 1e-6 else 0.0


def _select_satb(score):
    parts = list(score.parts)
    chosen = []
    for voice in SATB:
        match = next((p for p in parts if (p.partName or p.id or "").strip().lower().startswith(voice)), None)
        if match is None:
            break
        chosen.append(match)
    if len(chosen) == 4:
        return chosen
    if len(parts) == 4:
        return parts
    names = ", ".join(str(p.partName) for p in parts)
    raise ValueError(f"not four S/A/T/B voices (parts: {names})")


def _score_to_midi_bytes(score, parts, names: list[str]) -> bytes:
    """The given parts of a music21 score -> MIDI bytes, one named track a part, pickup padded."""
    import symusic
    from music21 import midi as m21midi

    pad_quarters = _pickup_quarters(parts[0])
    for p in list(score.parts):
        if not any(p is q for q in parts):
            score.remove(p)  # e.g. the instrumental doubling in some chorales
    mf = m21midi.translate.music21ObjectToMidiFile(score)
    sc = symusic.Score.from_midi(mf.writestr())
    tracks = [t for t in sc.tracks if t.note_num() > 0]
    if len(tracks) != len(parts):
        raise ValueError(f"expected {len(parts)} voices with notes, found {len(tracks)}")
    for t, name in zip(tracks, names):
        t.name = name
    pad_ticks = int(round(pad_quarters * sc.ticks_per_quarter))
    out = sc.copy()
    # Only the notes move: tempo and meter stay at time 0, which is now a downbeat.
    out.tracks = [t.shift_time(pad_ticks) for t in tracks] if pad_ticks else tracks
    return out.dumps_midi()


def top_line(start, duration, pitch) -> list[tuple[int, int, int, int]]:
    """One part's notes -> its top line: ``(start, end, pitch, index of the source note)`` in time order.

    At every moment the highest sounding note wins; of equal pitches, the one that began first. A
    note covered for a while by a higher one goes on (as a new note) once it is the highest again.
    Times are integers (ticks).
    """
    import heapq

    n = len(start)
    if n == 0:
        return []
    ends = [int(s) + int(d) for s, d in zip(start, duration)]
    order = sorted(range(n), key=lambda i: (int(start[i]), -int(pitch[i])))
    times = sorted({int(t) for t in start} | set(ends))
    out: list[list[int]] = []
    active: list[tuple[int, int, int]] = []  # heap of (-pitch, start, index)
    k = 0
    for t0, t1 in zip(times, times[1:]):
        while k < n and int(start[order[k]]) <= t0:
            i = order[k]
            if ends[i] > int(start[i]):
                heapq.heappush(active, (-int(pitch[i]), int(start[i]), i))
            k += 1
        while active and ends[active[0][2]] <= t0:
            heapq.heappop(active)
        if not active:
            continue
        # a covered note that ended meanwhile is still in the heap below the top: it is popped once on top
        i = active[0][2]
        if out and out[-1][3] == i and out[-1][1] == t0:
            out[-1][1] = t1
        else:
            out.append([t0, t1, int(pitch[i]), i])
    return [tuple(x) for x in out]


def register_order(mean_pitches: list[float]) -> list[int]:
    """Which parts become soprano, alto, tenor, bass: part indices, highest first.

    Four parts: all, by mean pitch. More: the highest and the lowest, plus the two inner parts
    nearest the midpoint of those two's mean pitches. Fewer is a ``ValueError``.
    """
    n = len(mean_pitches)
    if n < 4:
        raise ValueError(f"{n} part{'s' if n != 1 else ''} with notes; the 4-track layout needs at least four")
    by_pitch = sorted(range(n), key=lambda i: -mean_pitches[i])  # stable: equal means keep score order
    top, bottom, inner = by_pitch[0], by_pitch[-1], by_pitch[1:-1]
    middle = (mean_pitches[top] + mean_pitches[bottom]) / 2
    nearest = sorted(inner, key=lambda i: (abs(mean_pitches[i] - middle), inner.index(i)))[:2]
    return [top] + sorted(nearest, key=inner.index) + [bottom]


def _without_repeats(score):
    """The score with its repeat signs and jumps removed, so each written bar is played once."""
    from music21 import bar, repeat, spanner

    for m in score.recurse().getElementsByClass("Measure"):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = bar.Barline()
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline()
    for x in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        x.activeSite.remove(x)
    for sp in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        for site in list(sp.sites.get()):
            if hasattr(site, "remove") and sp in getattr(site, "elements", ()):
                site.remove(sp)
    return score


def _register_midi_bytes(score) -> tuple[bytes, list[str]]:
    """A music21 score with any number of parts -> 4-track MIDI bytes by register (module docstring).

    Returns the bytes and the kept parts' names, soprano first.
    """
    import numpy as np
    import symusic
    from music21 import midi as m21midi

    parts = list(score.parts)
    pad_quarters = _pickup_quarters(parts[0]) if parts else 0.0
    # Grace notes go: music21 writes one as a note-on and a note-off at the same tick, which a
    # MIDI reader may pair with a later note-off (a C6 held for 70 quarters in Mozart's K. 458);
    # they have no length on the grid anyway.
    for n in list(score.recurse().notes):
        if n.duration.isGrace:
            n.activeSite.remove(n)
    part_names = [str(p.partName or p.id) for p in parts]
    try:
        midi = m21midi.translate.music21ObjectToMidiFile(score).writestr()
    except Exception as e:  # music21 plays repeats out; some movements' repeat marks confuse it
        if "repeat" not in str(e).lower():
            raise
        midi = m21midi.translate.music21ObjectToMidiFile(_without_repeats(score)).writestr()
    sc = symusic.Score.from_midi(midi)
    # music21 writes a conductor track first when the score has more than one part, then one track a part
    tracks = [t for t in sc.tracks if not t.is_drum]
    if len(tracks) == len(parts) + 1 and tracks[0].note_num() == 0:
        tracks = tracks[1:]
    names = part_names if len(tracks) == len(parts) else [t.name or f"track {i}" for i, t in enumerate(tracks)]
    lines, means, kept_names = [], [], []
    for track, name in zip(tracks, names):
        notes = track.notes.numpy()
        line = top_line(notes["time"], notes["duration"], notes["pitch"])
        if not line:
            continue
        span = np.array([e - s for s, e, _, _ in line], np.float64)
        pitches = np.array([p for _, _, p, _ in line], np.float64)
        lines.append((line, notes["velocity"]))
        means.append(float((span * pitches).sum() / span.sum()))
        kept_names.append(name)
    chosen = register_order(means)
    pad_ticks = int(round(pad_quarters * sc.ticks_per_quarter))
    out = sc.copy()
    out.tracks = []
    for voice, j in zip(SATB, chosen):
        line, velocity = lines[j]
        track = symusic.Track(name=voice, program=0, is_drum=False)
        track.notes.extend(symusic.Note.from_numpy(
            np.array([s + pad_ticks for s, _, _, _ in line], np.int32),
            np.array([e - s for s, e, _, _ in line], np.int32),
            np.array([p for _, _, p, _ in line], np.int8),
            np.array([velocity[i] for _, _, _, i in line], np.int8)))
        out.tracks.append(track)
    return out.dumps_midi(), [kept_names[j] for j in chosen]


def convert_one(src: str, source: str, cache_dir: str) -> dict:
    """Convert one corpus file (one chorale, or an ABC book of tunes) into cached MIDI files.

    Returns ``{"outputs": [...], "skipped": [{"file", "reason"}]}`` and writes the same as the
    file's marker. Runs inside a Ray task; never raises for bad music.
    """
    from music21 import converter, stream

    src_path, cache = Path(src), Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    outputs, skipped = [], []
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", _flat_name(src_path.with_suffix("")))
    try:
        parsed = converter.parse(str(src_path))
    except Exception as e:
        parsed = None
        skipped.append({"file": str(src_path), "reason": f"music21 could not parse it: {e}"[:300]})
    try:
        if parsed is None:
            items = []
        elif source == "bach":
            items = [(stem, parsed, _select_satb(parsed), list(SATB))]
        elif source in REGISTER_SOURCES:
            items = [(stem, parsed, None, list(SATB))]
        else:
            scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
            items = [(f"{stem}-{i:04d}", s, list(s.parts)[:1], ["melody"]) for i, s in enumerate(scores)]
    except Exception as e:
        items = []
        skipped.append({"file": str(src_path), "reason": str(e)[:300]})
    layouts = {}
    for name, score, parts, track_names in items:
        try:
            if parts is None:  # by register
                data, layouts[f"{name}.mid"] = _register_midi_bytes(score)
            elif not parts:
                raise ValueError("no parts")
            else:
                data = _score_to_midi_bytes(score, parts, track_names)
            out = cache / f"{name}.mid"
            _write_atomic(out, data)
            outputs.append(out.name)
        except Exception as e:
            skipped.append({"file": f"{src_path}#{name}", "reason": f"conversion failed: {e}"[:300]})
    result = {"source_file": str(src_path), "outputs": outputs, "skipped": skipped}
    if layouts:  # which parts became soprano, alto, tenor, bass
        result["layout"] = layouts
    _write_atomic(_marker(cache, src_path), json.dumps(result).encode())
    return result


def ensure_converted(source: str, limit: int | None = None, progress: bool = True) -> tuple[list[Path], list[dict]]:
    """MIDI files for an embedded source, converting (in parallel, with Ray) what is not cached.

    ``limit`` caps the number of corpus files considered (handy for tests).
    Returns ``(midi_paths, skipped)``.
    """
    cache = corpus_cache_dir(source)
    cache.mkdir(parents=True, exist_ok=True)
    files = corpus_files(source)
    if limit:
        files = files[:limit]
    todo = [f for f in files if not _marker(cache, f).exists()]
    if todo:
        import ray

        from musicgan.ray_utils import ensure_ray

        ensure_ray()
        convert = ray.remote(num_cpus=1, max_retries=1)(convert_one)
        pending = [convert.remote(str(f), source, str(cache)) for f in todo]
        bar = _progress(len(todo), f"converting {source} corpus to MIDI (once; cached in {cache})", progress)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
            bar.update(len(done))
        bar.close()
    midi, skipped = [], []
    for f in files:
        marker = json.loads(_marker(cache, f).read_text())
        midi.extend(cache / name for name in marker["outputs"])
        skipped.extend(marker["skipped"])
    return midi, skipped


def _progress(total: int, desc: str, enabled: bool):
    """A tqdm bar; when stderr is not a terminal (CI, logs) it redraws every 10 s instead of per file."""
    import sys

    from tqdm.auto import tqdm

    interval = 0.1 if sys.stderr.isatty() else 10.0
    return tqdm(total=total, desc=desc, unit="file", disable=not enabled, dynamic_ncols=True, mininterval=interval)
