"""The embedded default music: corpora that ship inside the ``music21`` wheel, as cached MIDI.

music21 parses MusicXML/Humdrum/ABC slowly (about 0.28 s a Bach chorale here), so each corpus
file is converted once, in parallel Ray tasks, into a cache of plain MIDI files that the fast
symusic path reads from then on. Every corpus file gets a small ``.done.json`` marker listing
what it produced (or why it produced nothing); a file with a marker is never converted again.

The MIDI is written so that time 0 is a downbeat: a pickup (anacrusis) bar is padded with rest,
which keeps the phrase grid on the barlines.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

EMBEDDED_MIDI_SOURCES = ("bach", "folk")
SATB = ("soprano", "alto", "tenor", "bass")
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth")
CONVERTER_VERSION = 2  # bump when the conversion changes what it writes


def cache_root() -> Path:
    return Path(os.environ.get("MUSICGAN_CACHE_DIR", Path.home() / ".cache" / "musicgan"))


def music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def corpus_cache_dir(source: str) -> Path:
    import music21

    return cache_root() / "corpus" / f"{source}-music21_{music21.__version__}-v{CONVERTER_VERSION}"


def corpus_files(source: str) -> list[Path]:
    """The music21 corpus files that make up an embedded source, sorted."""
    root = music21_corpus_dir()
    if source == "bach":
        files = [p for p in (root / "bach").iterdir() if p.suffix in (".mxl", ".krn", ".xml")]
    elif source == "folk":
        files = [p for c in FOLK_COLLECTIONS for p in (root / c).rglob("*.abc")]
    else:
        raise ValueError(f"unknown embedded source {source!r}")
    return sorted(files)


def _marker(cache: Path, src: Path) -> Path:
    return cache / (src.parent.name + "__" + src.name + ".done.json")


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


def convert_one(src: str, source: str, cache_dir: str) -> dict:
    """Convert one corpus file (one chorale, or an ABC book of tunes) into cached MIDI files.

    Returns ``{"outputs": [...], "skipped": [{"file", "reason"}]}`` and writes the same as the
    file's marker. Runs inside a Ray task; never raises for bad music.
    """
    from music21 import converter, stream

    src_path, cache = Path(src), Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    outputs, skipped = [], []
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", src_path.parent.name + "__" + src_path.stem)
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
        else:
            scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
            items = [(f"{stem}-{i:04d}", s, list(s.parts)[:1], ["melody"]) for i, s in enumerate(scores)]
    except Exception as e:
        items = []
        skipped.append({"file": str(src_path), "reason": str(e)[:300]})
    for name, score, parts, track_names in items:
        try:
            if not parts:
                raise ValueError("no parts")
            data = _score_to_midi_bytes(score, parts, track_names)
            out = cache / f"{name}.mid"
            _write_atomic(out, data)
            outputs.append(out.name)
        except Exception as e:
            skipped.append({"file": f"{src_path}#{name}", "reason": f"conversion failed: {e}"[:300]})
    result = {"source_file": str(src_path), "outputs": outputs, "skipped": skipped}
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
