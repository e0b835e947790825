"""``musicgan data build``: music files -> Parquet shards + ``manifest.json``, as a Ray Data pipeline.

1. List the input files (and convert/render the embedded corpora once, cached).
2. Group them into shards; a Ray Data ``map`` parses each group in parallel (symusic for MIDI,
   librosa for audio), cuts phrases/clips, and writes one shard through a temporary name.
3. The driver gathers each shard's counts, statistics and skipped files and writes the
   manifest last. A killed build therefore has no manifest, and readers refuse it.

A build is fingerprinted by its feature config and its inputs (path, size, mtime); rebuilding
an identical fingerprint does nothing.

Every row carries a ``label`` and the manifest lists them all in ``labels`` (a label's index is
its position there, which is what a conditioned model learns). A build has one label (its source
or folder name), except ``styles``, where each file is labelled with the style it came from and
``limit`` counts files per style. The manifest's ``per_label`` gives each label's file and phrase
counts, its train/val split and its per-track statistics; they add up to ``counts``.

Nothing is written into ``--out`` itself until the new build is complete: shards and manifest
go to a temporary folder beside it (``.NAME.build-`` and 8 random hex digits, in the same parent,
so the final rename is atomic), which then takes ``--out``'s place; the old build stays whole until that moment, and a
failed build removes its temporary folder (and any parent folders it made). A build with another
source or feature config does not replace an existing one unless forced.

Listing a local source does not follow symbolic links to folders (a link loop would list every
file again and again, and the same piece could land in train and val), nor links to anything
outside the source; a file reached by several links is read once. Names that are not UTF-8 are
skipped with their reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from musicgan.config import FeatureConfig, from_dict, to_dict
from musicgan.data import shards as S
from musicgan.data.audio import AUDIO_SUFFIXES, MAX_AUDIO_SECONDS
from musicgan.data.notes import LABELS_FILE
from musicgan.data.pianoroll import BadInput
from musicgan.data.sources import SOURCES, with_source_defaults
from musicgan.errors import UserError
from musicgan.storage import Location, list_files, resolve

MIDI_SUFFIXES = (".mid", ".midi")
EMBEDDED = tuple(SOURCES)


class BuildError(UserError):
    """A build that cannot go ahead; the message says why and what to do."""


@dataclass
class Inputs:
    kind: str
    label: str
    base: Location
    files: list[tuple[str, int, int]]
    skipped: list[dict] = field(default_factory=list)
    source_id: str = ""
    note_labels: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Single-note audio: ``{relative file: (MIDI pitch, instrument name)}`` from ``labels.csv``."""
    file_labels: dict[str, list[str]] = field(default_factory=dict)
    """Builds of several labels: ``{relative file: [label, split key]}``. The split key is the file's
    name within its own source, so a piece is held out in ``styles`` exactly when it is in its own
    source's build."""
    labels: list[str] = field(default_factory=list)
    """Every label of the build, in index order; ``[label]`` when empty."""

    def all_labels(self) -> list[str]:
        return list(self.labels) or [self.label]


@dataclass
class BuildResult:
    out: str
    manifest: dict
    no_op: bool
    seconds: float


# ---------------------------------------------------------------------------------------------
# 1. inputs


def resolve_inputs(source: str, fc: FeatureConfig, limit: int | None, progress: bool,
                   instruments: list[str] | None = None, velocities: list[int] | None = None) -> Inputs:
    if source == "notes":
        from musicgan.data import notes

        folder, backend = notes.ensure_rendered(fc.pitch_low, fc.pitch_high,
                                                list(instruments or notes.DEFAULT_INSTRUMENTS),
                                                list(velocities or notes.DEFAULT_VELOCITIES), fc.clip_seconds,
                                                fc.sample_rate_hz, progress)
        inputs = _folder_inputs(resolve(str(folder)), limit, fc)
        inputs.label, inputs.source_id = "notes", f"embedded:notes:{backend}:{folder.name}"
        return inputs
    if source == "styles":
        return _styles_inputs(limit, progress)
    from musicgan.data.corpus import EMBEDDED_MIDI_SOURCES

    if source in EMBEDDED_MIDI_SOURCES:
        from musicgan.data.corpus import corpus_cache_dir, ensure_converted

        midi, skipped = ensure_converted(source, limit=limit, progress=progress)
        base = resolve(corpus_cache_dir(source))
        files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(midi)]
        return Inputs("pianoroll", source, base, files, skipped, source_id=f"embedded:{source}")
    if source == "bach-audio":
        from musicgan.data.audio import render_cached, synth_backend
        from musicgan.data.corpus import cache_root, ensure_converted

        midi, skipped = ensure_converted("bach", limit=limit, progress=progress)
        backend = synth_backend()
        cache = cache_root() / "audio" / f"bach-{backend}-{fc.sample_rate_hz}hz"
        wavs = render_cached(sorted(midi), cache, fc.sample_rate_hz, progress=progress)
        files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(wavs)]
        return Inputs("mel", "bach", resolve(cache), files, skipped, source_id=f"embedded:bach-audio:{backend}")

    loc = resolve(source)
    try:
        info = loc.fs.get_file_info(loc.path)
    except Exception as e:
        raise BuildError(f"cannot read source {source}: {e}") from None
    import pyarrow.fs as pafs

    if info.type == pafs.FileType.NotFound:
        raise BuildError(f"source {source} does not exist (expected one of {', '.join(map(repr, SOURCES))}, "
                         "or a folder/URI of MIDI or audio files)")
    if info.type != pafs.FileType.Directory:
        raise BuildError(f"source {source} is a file; give the folder that holds the music files")
    return _folder_inputs(loc, limit, fc)


def _styles_inputs(limit: int | None, progress: bool) -> Inputs:
    """Every style's converted MIDI (``limit`` files of each), each file labelled with its style."""
    from musicgan.data.corpus import STYLES, cache_root, corpus_cache_dir, ensure_converted

    root = cache_root() / "corpus"
    base = resolve(str(root))
    files, skipped, file_labels = [], [], {}
    for style in STYLES:
        midi, style_skipped = ensure_converted(style, limit=limit, progress=progress)
        for p in sorted(midi):
            files.append((str(p), p.stat().st_size, p.stat().st_mtime_ns))
            file_labels[_rel(base, str(p))] = [style, p.relative_to(corpus_cache_dir(style)).as_posix()]
        skipped += [{**s, "label": style} for s in style_skipped]
    return Inputs("pianoroll", "styles", base, files, skipped, source_id="embedded:styles",
                  file_labels=file_labels, labels=list(STYLES))


def _folder_inputs(loc: Location, limit: int | None, fc: FeatureConfig) -> Inputs:
    """A folder of MIDI files, or of audio files with an optional ``labels.csv`` (file,pitch,instrument)."""
    source = loc.uri
    label = posixpath.basename(loc.path.rstrip("/")) or "music"
    files, skipped = list_source(loc, MIDI_SUFFIXES)
    kind = "pianoroll"
    if not files:
        files, skipped = list_source(loc, AUDIO_SUFFIXES)
        kind = "mel"
    if not files:
        raise BuildError(f"no MIDI (.mid/.midi) or audio ({'/'.join(s[1:] for s in AUDIO_SUFFIXES)}) "
                         f"files under {source}" + _reasons(skipped))
    if kind == "pianoroll":
        # from the listing, before anything is read: a huge file never reaches a worker's memory
        too_big = [f for f in files if f[1] > fc.max_file_bytes]
        skipped += [{"file": _rel(loc, p), "reason": f"file too large ({size} bytes > max_file_bytes "
                                                     f"{fc.max_file_bytes}), not read"} for p, size, _ in too_big]
        files = [f for f in files if f[1] <= fc.max_file_bytes]
    labels = {}
    if kind == "mel" and loc.join(LABELS_FILE).exists():
        from musicgan.data.notes import read_labels

        labels = read_labels(loc.join(LABELS_FILE).read_bytes().decode("utf-8", "replace"), f"{source}/{LABELS_FILE}")
        unlabelled = [f for f in files if _rel(loc, f[0]) not in labels]
        skipped += [{"file": _rel(loc, f[0]), "reason": f"not listed in {LABELS_FILE}"} for f in unlabelled]
        files = [f for f in files if _rel(loc, f[0]) in labels]
    if limit:
        files = files[:limit]
    labels = {_rel(loc, f[0]): labels[_rel(loc, f[0])] for f in files} if labels else {}
    return Inputs(kind, label, loc, files, skipped, source_id=loc.uri, note_labels=labels)


def list_source(loc: Location, suffixes: tuple[str, ...]) -> tuple[list[tuple[str, int, int]], list[dict]]:
    """The music files under a source folder, each once, and the entries skipped with their reason.

    Returns sorted ``(path, size_bytes, mtime_ns)`` as :func:`musicgan.storage.list_files` does, plus
    ``[{"file", "reason"}]``. Object stores have no links; a local folder is walked here (see
    :func:`_list_local`) because pyarrow's recursive listing follows every link to a folder.
    """
    if not loc.is_local:
        try:
            return list_files(loc, suffixes), []
        except Exception as e:
            raise BuildError(f"cannot list source {loc.uri}: {str(e).splitlines()[0][:300]}") from None
    return _list_local(loc.path, suffixes)


def _shown(raw: bytes) -> str:
    """A file name (bytes) for messages and the manifest: undecodable bytes appear as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _list_local(root: str, suffixes: tuple[str, ...]) -> tuple[list[tuple[str, int, int]], list[dict]]:
    """Walk a local folder with bytes names, following no link to a folder and no link out of ``root``.

    A link to a file inside the source is read once, under its own name, and only if the file it
    points to is not listed itself. Names that are not UTF-8, links to folders, links out of the
    source and broken links are skipped with their reason (file links only where the suffix fits).
    """
    broot = os.fsencode(root)
    real_root = os.path.realpath(root)
    bsuffixes = tuple(x.encode() for x in suffixes)
    files: list[tuple[str, int, int]] = []
    skipped: list[dict] = []
    links: list[tuple[str, str]] = []  # (path, real target) of file links inside the source
    real_seen: set[str] = set()

    def rel(p: bytes) -> str:
        return _shown(os.path.relpath(p, broot))

    stack = [broot]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            skipped.append({"file": rel(folder), "reason": f"folder not readable ({e.strerror or e}), not listed"})
            continue
        for entry in entries:
            name = entry.name
            music = name.lower().endswith(bsuffixes)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                is_link = entry.is_symlink()
            except OSError:
                continue
            try:
                name.decode("utf-8")
            except UnicodeDecodeError:
                if is_dir or music:
                    what = "folder" if is_dir else "file"
                    skipped.append({"file": rel(entry.path),
                                    "reason": f"{what} name is not valid UTF-8 ({name!r}); rename it to read it"})
                continue
            if name.startswith(b"."):
                continue
            if is_link:
                target = os.path.realpath(os.fsdecode(entry.path))
                if os.path.isdir(target):
                    parent_real = os.path.realpath(os.fsdecode(folder))
                    if _inside(parent_real, target):
                        why = "symbolic link loop (it points to a folder that holds it), not followed"
                    elif _inside(target, real_root):
                        why = "symbolic link to a folder inside the source, not followed (its files are listed once)"
                    else:
                        why = "symbolic link to a folder outside the source, not followed"
                    skipped.append({"file": rel(entry.path), "reason": why})
                elif music:
                    if not os.path.exists(target):
                        skipped.append({"file": rel(entry.path), "reason": "broken symbolic link"})
                    elif not _inside(target, real_root):
                        skipped.append({"file": rel(entry.path),
                                        "reason": "symbolic link to a file outside the source, not followed"})
                    else:
                        links.append((os.fsdecode(entry.path), target))
                continue
            if is_dir:
                stack.append(entry.path)
                continue
            if not music or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            path = os.fsdecode(entry.path)
            files.append((path, int(st.st_size), int(st.st_mtime_ns)))
            real_seen.add(os.path.realpath(path))
    for path, target in sorted(links):
        if target in real_seen:
            where = _shown(os.fsencode(os.path.relpath(target, real_root)))
            skipped.append({"file": _shown(os.fsencode(os.path.relpath(path, root))),
                            "reason": f"symbolic link to {where}, which is read once already"})
            continue
        real_seen.add(target)
        st = os.stat(target)
        files.append((path, int(st.st_size), int(st.st_mtime_ns)))
    files.sort()
    skipped.sort(key=lambda s: s["file"])
    return files, skipped


def fingerprint(inputs: Inputs, fc: FeatureConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": S.FORMAT, "features": to_dict(fc), "source": inputs.source_id},
                        sort_keys=True).encode())
    for path, size, mtime in inputs.files:
        h.update(f"{_rel(inputs.base, path)}\0{size}\0{mtime}\n".encode())
    h.update(json.dumps(sorted(inputs.note_labels.items())).encode())
    if inputs.file_labels:  # only here, so that single-label builds keep their fingerprints
        h.update(json.dumps([inputs.all_labels(), sorted(inputs.file_labels.items())]).encode())
    return h.hexdigest()[:24]


def _rel(base: Location, path: str) -> str:
    return posixpath.relpath(path, base.path) if path.startswith(base.path) else path


# ---------------------------------------------------------------------------------------------
# 2. one shard (runs inside a Ray Data task)


def _empty_stats(fc: FeatureConfig) -> dict:
    if fc.kind == "mel":
        return {"clips": 0, "db_sum": 0.0, "db_sq_sum": 0.0, "values": 0}
    t = fc.n_tracks
    return {"phrases": 0, "active_steps": [0] * t, "empty_bars": [0] * t, "pitch_hist": [[0] * 128 for _ in range(t)],
            "note_onsets": [0] * t, "notes_out_of_range_phrases": 0, "too_sparse_phrases": 0}


def _pianoroll_stats(stats: dict, phrases: np.ndarray, fc: FeatureConfig) -> None:
    """Accumulate per-track statistics of time-major phrases ``[n, steps, tracks, pitches]``."""
    n, steps, t, pitches = phrases.shape
    stats["phrases"] += n
    sounding = phrases.any(axis=3)  # [n, steps, t]
    bars = sounding.reshape(n, fc.bars, fc.steps_per_bar, t).any(axis=2)  # [n, bars, t]
    per_pitch = phrases.sum(axis=(0, 1))  # [t, pitches]
    # a note starts where its cell sounds and the step before it did not (the roll has no onsets)
    onsets = phrases[:, 0].sum(axis=(0, 2)) + (phrases[:, 1:] & ~phrases[:, :-1]).sum(axis=(0, 1, 3))  # [t]
    for i in range(t):
        stats["note_onsets"][i] += int(onsets[i])
        stats["active_steps"][i] += int(sounding[..., i].sum())
        stats["empty_bars"][i] += int((~bars[..., i]).sum())
        for j in np.flatnonzero(per_pitch[i]):
            stats["pitch_hist"][i][fc.pitch_low + j] += int(per_pitch[i, j])


def read_local(path: str, limit: int) -> bytes:
    """A local file's bytes, at most ``limit`` of them, in three system calls. pyarrow's
    ``open_input_stream`` costs about 55 us for a 3 KB chorale, four times the parse of it: a build
    of small MIDI files spent more time opening them than reading the music."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        want = min(os.fstat(fd).st_size, limit)  # never past the limit, however big the file is now
        chunks, got = [], 0
        while got < want:  # one read but for the rare short one
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def read_input(base: Location, path: str, fc: FeatureConfig, max_audio_seconds: float = MAX_AUDIO_SECONDS) -> bytes:
    """One input file's bytes, never more than its limit: MIDI up to ``max_file_bytes`` (plus one byte,
    so an oversized file is still recognised), audio only once its header says it is short enough.
    Over a limit is :class:`BadInput`."""
    from musicgan.data.audio import audio_header_check

    if fc.kind != "mel":  # parse_midi rejects the extra byte with the limit's name
        if base.is_local:
            return read_local(path, fc.max_file_bytes + 1)
        with base.fs.open_input_stream(path) as f:
            return f.read(fc.max_file_bytes + 1)
    with base.fs.open_input_file(path) as f:
        size = f.size()
        read_limit = audio_header_check(f, max_audio_seconds)  # None: no header soundfile knows (mp3 fallback)
        if read_limit is None:
            read_limit = fc.max_file_bytes
        if size > read_limit:
            raise BadInput(f"file too large ({size} bytes > {read_limit} for its audio), not decoded")
        f.seek(0)
        return f.read(size)


def process_group(row: dict, out_uri: str, base_uri: str, fc_dict: dict, label: str,
                  row_group_rows: int, note_labels: dict | None = None, file_labels: dict | None = None) -> dict:
    """Parse every file of one group and write ``shard-NNNNN.parquet``; return its bookkeeping.

    ``note_labels`` maps a relative file name to ``[MIDI pitch, instrument index]`` (single-note audio).
    ``file_labels`` maps a relative file name to ``[label, split key]`` (builds of several labels);
    a file not in it has ``label`` and is split by its relative name. The bookkeeping has each
    label's counts and statistics too (``by_label``).
    """
    from musicgan.data.audio import audio_to_clips, decode_audio
    from musicgan.data.pianoroll import midi_to_phrases

    fc = from_dict(FeatureConfig, fc_dict)
    base, out = resolve(base_uri), resolve(out_uri)
    shard_id = int(row["shard_id"])
    files = json.loads(row["files_json"])
    cols = {name: [] for name in S.SCHEMA.names}
    stats, skipped, warnings = _empty_stats(fc), [], []
    files_ok = 0
    by_label: dict[str, dict] = {}
    for path in files:
        rel = _rel(base, path)
        file_label, split_key = (file_labels or {}).get(rel, (label, rel))
        mine = by_label.setdefault(file_label, {"files_ok": 0, "files_skipped": 0, "train": 0, "val": 0,
                                                "stats": _empty_stats(fc)})
        n_skipped = len(skipped)
        try:
            try:
                data = read_input(base, path, fc)
            except OSError as e:
                raise BadInput(f"unreadable: {e}"[:300]) from None
            if fc.kind == "mel":
                mels, starts = audio_to_clips(decode_audio(data, path, fc.sample_rate_hz, MAX_AUDIO_SECONDS), fc)
                xs, n = S.encode_mel(mels[:, None]), len(mels)
                starts_col, transposes = starts, np.zeros(n, np.int8)
                for st in (stats, mine["stats"]):
                    st["clips"] += n
                    st["db_sum"] += float(mels.sum(dtype=np.float64))
                    st["db_sq_sum"] += float((mels.astype(np.float64) ** 2).sum())
                    st["values"] += int(mels.size)
            else:
                result = midi_to_phrases(data, fc)
                for st in (stats, mine["stats"]):
                    st["notes_out_of_range_phrases"] += result.phrases_out_of_range
                    st["too_sparse_phrases"] += result.phrases_too_sparse
                warnings.extend(f"{rel}: {w}" for w in result.warnings)
                n = len(result.phrases)
                if n == 0:
                    why = (f"no phrase of {fc.bars} bars fits: {result.n_steps} steps, "
                           f"{result.phrases_too_sparse} too sparse, {result.phrases_out_of_range} outside "
                           f"pitch range {fc.pitch_low}:{fc.pitch_high}")
                    raise BadInput(why)
                xs = S.encode_pianoroll(result.phrases)
                starts_col, transposes = result.start_bars, result.transposes
                _pianoroll_stats(stats, result.phrases, fc)
                _pianoroll_stats(mine["stats"], result.phrases, fc)
        except BadInput as e:
            skipped.append({"file": rel, "reason": str(e)})
        except Exception as e:  # a parser bug must not sink the build: record it like bad input
            skipped.append({"file": rel, "reason": f"unexpected {type(e).__name__}: {e}"[:300]})
        if len(skipped) > n_skipped:
            mine["files_skipped"] += 1
            if file_labels:
                skipped[-1]["label"] = file_label
            continue
        files_ok += 1
        split = S.split_of(split_key, fc.val_fraction)
        mine["files_ok"] += 1
        mine[split] += n
        cols["x"].extend(xs)
        cols["label"].extend([file_label] * n)
        cols["source"].extend([rel] * n)
        cols["split"].extend([split] * n)
        cols["start"].extend(np.asarray(starts_col, np.float32).tolist())
        cols["transpose"].extend(np.asarray(transposes, np.int8).tolist())
        pitch, instrument = (note_labels or {}).get(rel, (-1, -1))
        cols["pitch"].extend([pitch] * n)
        cols["instrument"].extend([instrument] * n)
    rows = len(cols["x"])
    shard = None
    if rows:
        name = f"shard-{shard_id:05d}.parquet"
        size = S.write_shard(out.join(name), cols, row_group_rows)
        splits = {s: cols["split"].count(s) for s in ("train", "val")}
        shard = {"path": name, "rows": rows, "bytes": size, "splits": splits}
    summary = {"shard": shard, "files_ok": files_ok, "skipped": skipped, "warnings": warnings, "stats": stats,
               "by_label": by_label}
    return {"shard_id": shard_id, "summary_json": json.dumps(summary)}


# ---------------------------------------------------------------------------------------------
# 3. the build


def _merge_stats(total: dict, part: dict) -> None:
    for k, v in part.items():
        if isinstance(v, dict):
            _merge_stats(total[k], v)
        elif isinstance(v, list) and v and isinstance(v[0], list):
            for row_t, row_p in zip(total[k], v):
                for j, x in enumerate(row_p):
                    row_t[j] += x
        elif isinstance(v, list):
            total[k] = [a + b for a, b in zip(total[k], v)]
        else:
            total[k] += v


def _track_stats(stats: dict, fc: FeatureConfig) -> dict:
    if fc.kind == "mel":
        n = max(stats["values"], 1)
        mean = stats["db_sum"] / n
        return {"clips": stats["clips"], "mean_db": round(mean, 3),
                "std_db": round(float(np.sqrt(max(stats["db_sq_sum"] / n - mean**2, 0.0))), 3)}
    phrases = max(stats["phrases"], 1)
    out = {}
    for i, name in enumerate(fc.track_names):
        hist = np.asarray(stats["pitch_hist"][i], np.float64)
        used = np.flatnonzero(hist)
        out[name] = {
            "active_step_fraction": round(stats["active_steps"][i] / (phrases * fc.steps_per_phrase), 4),
            "empty_bar_fraction": round(stats["empty_bars"][i] / (phrases * fc.bars), 4),
            "pitch_min": int(used.min()) if used.size else None,
            "pitch_max": int(used.max()) if used.size else None,
            "pitch_mean": round(float((hist * np.arange(128)).sum() / hist.sum()), 2) if hist.sum() else None,
            # a bar here is steps_per_bar steps (a 4/4 bar), whatever the music's meter
            "notes_per_bar": round(stats["note_onsets"][i] / (phrases * fc.bars), 3),
        }
    return out


def _versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("musicgan", "ray", "symusic", "pretty_midi", "music21", "librosa", "pyarrow", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


SHARD_NAME = re.compile(r"shard-\d+\.parquet")


def _parent(loc: Location) -> Location:
    return Location(loc.fs, posixpath.dirname(loc.path.rstrip("/")), loc.uri.rstrip("/").rsplit("/", 1)[0])


def _sibling(loc: Location, tag: str) -> Location:
    """A hidden name beside ``loc`` (same parent, so a rename between them is atomic on a local disk)."""
    name = f".{posixpath.basename(loc.path.rstrip('/'))}.{tag}-{uuid.uuid4().hex[:8]}"
    return _parent(loc).join(name)


def _target(out: Location) -> Location:
    """Where the build really goes: a local ``--out`` that is a symbolic link is replaced at its target."""
    if not out.is_local:
        return out
    real = os.path.realpath(out.path)
    return Location(out.fs, real, real)


def prepare_output(out: Location, out_arg: str) -> list[str]:
    """Check that a build can be written beside ``out`` (its temporary folder goes there), making the
    missing parent folders. Returns the local folders made, innermost first, so a build that
    fails can remove them again; nothing is written into ``out`` itself."""
    parent = _parent(out)
    if not parent.path or parent.path == out.path:
        raise BuildError(f"cannot write to output {out_arg}: give a folder inside a folder or bucket, not its root")
    made: list[str] = []
    if out.is_local:
        if os.path.lexists(out.path) and not os.path.isdir(out.path):
            raise BuildError(f"cannot write to output {out_arg}: it is a file, not a folder")
        p = parent.path
        while not os.path.lexists(p):
            made.append(p)
            p = os.path.dirname(p)
        if not os.path.isdir(p):
            raise BuildError(f"cannot write to output {out_arg}: {p} is not a folder")
    try:
        parent.mkdirs()
        probe = _sibling(out, "write-test")
        with out.fs.open_output_stream(probe.path) as f:
            f.write(b"ok")
        out.fs.delete_file(probe.path)
    except Exception as e:
        _remove_made(made)
        raise BuildError(f"cannot write to output {out_arg}: {str(e).splitlines()[0]}") from None
    return made


def check_writable(out: Location, out_arg: str) -> None:
    """Raise :class:`BuildError` unless a build can be written at ``out``; leaves nothing behind."""
    _remove_made(prepare_output(out, out_arg))


def _remove_made(made: list[str]) -> None:
    for p in made:  # innermost first; a folder someone else has filled meanwhile stays
        try:
            os.rmdir(p)
        except OSError:
            break


def _remove_tree(loc: Location) -> None:
    try:
        if loc.is_local:
            shutil.rmtree(loc.path, ignore_errors=True)
        elif loc.exists():
            loc.fs.delete_dir(loc.path)
    except Exception:  # cleanup is best effort: the build's own error is the one to report
        pass


def existing_build(out: Location) -> tuple[dict | None, list[str]]:
    """What ``out`` holds now: its manifest (``{}`` if unreadable, ``None`` if none) and the names of
    entries that no data build writes (a build never replaces a folder holding those)."""
    import pyarrow.fs as pafs

    if not out.exists():
        return None, []
    try:
        if out.is_local:
            names = [_shown(n) for n in os.listdir(os.fsencode(out.path))]
        else:
            names = [posixpath.basename(i.path)
                     for i in out.fs.get_file_info(pafs.FileSelector(out.path, recursive=False))]
    except OSError as e:
        raise BuildError(f"cannot list output {out.uri}: {str(e).splitlines()[0]}") from None
    foreign = sorted(n for n in names if not (n == S.MANIFEST or SHARD_NAME.fullmatch(n) or n.startswith(".")))
    old = None
    if S.MANIFEST in names:
        try:
            old = out.join(S.MANIFEST).read_json()
        except Exception:
            old = {}
        if not isinstance(old, dict):
            old = {}
    return old, foreign


def _up_to_date(old: dict, fp: str, out: Location) -> bool:
    """The existing build has this fingerprint and every shard it lists (a cheap check: no shard is read)."""
    try:
        return old.get("input_fingerprint") == fp and all(out.join(s["path"]).exists() for s in old["shards"])
    except (KeyError, TypeError, AttributeError):
        return False


def config_differences(old: dict, source: str, source_uri: str, fc: FeatureConfig) -> list[str]:
    """How a new build's source and feature config differ from an existing build's manifest."""
    diffs = []
    same_source = old.get("source_uri") == source_uri if "source_uri" in old else old.get("source") == source
    if not same_source:
        if old.get("source") != source:
            diffs.append(f"source {old.get('source')!r} -> {source!r}")
        else:
            diffs.append(f"source {source!r} is now {source_uri} (was {old.get('source_uri')})")
    before = old.get("feature_config") or {}
    try:  # fields added since that build count at their defaults
        before = to_dict(from_dict(FeatureConfig, before))
    except Exception:
        pass
    now = to_dict(fc)
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            diffs.append(f"{key} {before.get(key)!r} -> {now.get(key)!r}")
    return diffs


def _exchange(a: str, b: str) -> None:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``): a reader sees one or the other."""
    import ctypes

    if not sys.platform.startswith("linux"):
        raise OSError("no atomic exchange on this platform")
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        renameat2 = libc.renameat2
    except AttributeError:
        raise OSError("no renameat2 in this C library") from None
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def swap_in(new: Location, out: Location) -> None:
    """Put the finished build in folder ``new`` where ``out`` is, and remove what ``out`` held.

    Local disk: one atomic exchange of the two folders where the kernel offers it, else two
    renames in a row (the old build is moved aside first, and moved back if the second fails).
    Object stores cannot rename folders: the old manifest goes first (readers refuse the folder
    rather than mix two builds), the new files follow, the new manifest last.
    """
    if out.is_local:
        if not os.path.lexists(out.path):
            os.rename(new.path, out.path)
            return
        try:
            _exchange(new.path, out.path)
            old = new  # the old build now sits in the temporary folder
        except OSError:
            old = _sibling(out, "old")
            os.rename(out.path, old.path)
            try:
                os.rename(new.path, out.path)
            except OSError:
                os.rename(old.path, out.path)
                raise
        _remove_tree(old)
        return
    import pyarrow.fs as pafs

    fs = out.fs
    new_files = [i.path for i in fs.get_file_info(pafs.FileSelector(new.path, recursive=True))
                 if i.type == pafs.FileType.File]
    names = sorted(posixpath.relpath(p, new.path) for p in new_files)
    manifest = out.join(S.MANIFEST)
    if manifest.exists():
        fs.delete_file(manifest.path)
    old_files = []
    if out.exists():
        old_files = [i.path for i in fs.get_file_info(pafs.FileSelector(out.path, recursive=False))
                     if i.type == pafs.FileType.File and SHARD_NAME.fullmatch(posixpath.basename(i.path))]
    fs.create_dir(out.path, recursive=True)
    for name in sorted(names, key=lambda n: n == S.MANIFEST):  # the manifest last
        fs.move(new.join(name).path, out.join(name).path)
    for path in old_files:
        if posixpath.basename(path) not in names:
            fs.delete_file(path)
    _remove_tree(new)


def build(source: str, out_dir: str, fc: FeatureConfig, limit: int | None = None, files_per_shard: int = 32,
          row_group_rows: int = 256, progress: bool = True, force: bool = False, instruments: list[str] | None = None,
          velocities: list[int] | None = None) -> BuildResult:
    """Build shards from ``source``. ``instruments`` and ``velocities`` shape the ``notes`` grid
    (its pitches are ``fc.pitch_low``..``fc.pitch_high``, high exclusive).

    The build goes to a temporary folder beside ``out_dir`` and replaces ``out_dir`` only when its
    manifest is complete. An up-to-date ``out_dir`` is left alone (``no_op``) unless ``force``; one
    that holds a build of another source or feature config is refused unless ``force``; one that
    holds other files is always refused. A failed build leaves nothing behind. Fields of ``fc`` left
    at FeatureConfig's defaults take an embedded source's own (:mod:`musicgan.data.sources`).
    """
    t0 = time.time()
    fc = with_source_defaults(source, fc).validate()
    out = resolve(out_dir)
    target = _target(out)
    made = prepare_output(target, out_dir)
    tmp = None
    try:
        inputs = resolve_inputs(source, fc, limit, progress, instruments, velocities)
        if inputs.kind != fc.kind:
            fc = from_dict(FeatureConfig, {**to_dict(fc), "kind": inputs.kind})
        if inputs.kind == "mel" and fc.track_names != ["audio"]:
            fc.track_names = ["audio"]
        if not inputs.files:
            raise BuildError(f"no input files for source {source}" + _reasons(inputs.skipped))
        fp = fingerprint(inputs, fc)

        old, foreign = existing_build(target)
        readable = bool(old) and old.get("format") == S.FORMAT
        if readable and not force and _up_to_date(old, fp, target):
            return BuildResult(out.uri, old, no_op=True, seconds=time.time() - t0)
        if foreign:
            more = ", ..." if len(foreign) > 3 else ""
            raise BuildError(f"refusing to build into {out_dir}: it holds {len(foreign)} entries that are not part "
                             f"of a musicgan data build ({', '.join(foreign[:3])}{more}), and a build replaces the "
                             "whole folder; give a new or empty folder as --out")
        if readable and not force:
            diffs = config_differences(old, source, inputs.source_id, fc)
            if diffs:
                raise BuildError(f"{out_dir} holds a data build with a different config ({'; '.join(diffs)}); "
                                 "pass --force to replace it, or give another --out")

        tmp = _sibling(target, "build")
        tmp.mkdirs()
        manifest = _build_shards(tmp, source, inputs, fc, fp, files_per_shard, row_group_rows, t0)
        tmp.join(S.MANIFEST).write_json_atomic(manifest)
        swap_in(tmp, target)
        tmp = None
        return BuildResult(out.uri, manifest, no_op=False, seconds=time.time() - t0)
    except BaseException:
        if tmp is not None:
            _remove_tree(tmp)
        _remove_made(made)
        raise


def _build_shards(out: Location, source: str, inputs: Inputs, fc: FeatureConfig, fp: str, files_per_shard: int,
                  row_group_rows: int, t0: float) -> dict:
    """Run the Ray Data pipeline writing shards into ``out``; return the manifest (not yet written)."""
    import ray.data

    from musicgan.ray_utils import ensure_ray

    ensure_ray()
    paths = [p for p, _, _ in inputs.files]
    # instruments are numbered by name order, so the same label set always gets the same numbers
    instrument_names = sorted({name for _, name in inputs.note_labels.values()})
    note_labels = {rel: [p, instrument_names.index(name)] for rel, (p, name) in inputs.note_labels.items()}
    groups = [paths[i : i + files_per_shard] for i in range(0, len(paths), files_per_shard)]
    items = [{"shard_id": i, "files_json": json.dumps(g)} for i, g in enumerate(groups)]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map(
        process_group, num_cpus=1,
        fn_kwargs=dict(out_uri=out.uri, base_uri=inputs.base.uri, fc_dict=to_dict(fc), label=inputs.label,
                       row_group_rows=row_group_rows, note_labels=note_labels, file_labels=inputs.file_labels),
    )
    results = sorted(ds.take_all(), key=lambda r: r["shard_id"])

    stats, shard_list, skipped, warnings, files_ok = _empty_stats(fc), [], list(inputs.skipped), [], 0
    labels = inputs.all_labels()
    per_label = {name: {"files_ok": 0, "files_skipped": 0, "train": 0, "val": 0, "stats": _empty_stats(fc)}
                 for name in labels}
    for r in results:
        s = json.loads(r["summary_json"])
        files_ok += s["files_ok"]
        skipped.extend(s["skipped"])
        warnings.extend(s["warnings"])
        _merge_stats(stats, s["stats"])
        for name, part in s["by_label"].items():
            _merge_stats(per_label[name], part)
        if s["shard"]:
            shard_list.append(s["shard"])
    rows = sum(s["rows"] for s in shard_list)
    if rows == 0:
        raise BuildError(f"no valid file among {len(paths)} under {source}: nothing to train on"
                         + _reasons(skipped))

    manifest = {
        "format": S.FORMAT,
        "source": source,
        "source_folder": inputs.base.uri if source in EMBEDDED else None,
        "kind": fc.kind,
        "feature_config": to_dict(fc),
        "feature_hash": fc.hash(),
        "input_fingerprint": fp,
        "source_uri": inputs.source_id,
        "example_shape": fc.example_shape(),
        "labels": labels,
        # single-note audio: the pitches and instruments (index = the shards' instrument column)
        "pitches": sorted({p for p, _ in note_labels.values()}),
        "instruments": instrument_names,
        "counts": {
            "files_listed": len(paths) + len(inputs.skipped),
            "files_ok": files_ok,
            "files_skipped": len(skipped),
            "examples": rows,
            "train_examples": sum(s["splits"]["train"] for s in shard_list),
            "val_examples": sum(s["splits"]["val"] for s in shard_list),
            "shards": len(shard_list),
            "phrases_dropped_out_of_pitch_range": stats.get("notes_out_of_range_phrases", 0),
            "phrases_dropped_too_sparse": stats.get("too_sparse_phrases", 0),
        },
        "track_stats": _track_stats(stats, fc),
        "per_label": _per_label(per_label, inputs, fc),
        "shards": shard_list,
        "skipped": skipped,
        "warnings": warnings,
        "versions": _versions(),
        "build_seconds": round(time.time() - t0, 2),
        "created_unix": int(time.time()),
    }
    return manifest


def _per_label(per_label: dict, inputs: Inputs, fc: FeatureConfig) -> dict:
    """Each label's counts (they add up to the manifest's ``counts``) and per-track statistics."""
    listed = {name: 0 for name in per_label}
    for path, _, _ in inputs.files:
        listed[(inputs.file_labels.get(_rel(inputs.base, path)) or [inputs.label])[0]] += 1
    before = {name: 0 for name in per_label}  # skipped while listing or converting
    for s in inputs.skipped:
        before[s.get("label", inputs.label)] += 1
    out = {}
    for name, p in per_label.items():
        out[name] = {
            "files_listed": listed[name] + before[name],
            "files_ok": p["files_ok"],
            "files_skipped": p["files_skipped"] + before[name],
            "examples": p["train"] + p["val"],
            "train_examples": p["train"],
            "val_examples": p["val"],
            "phrases_dropped_out_of_pitch_range": p["stats"].get("notes_out_of_range_phrases", 0),
            "phrases_dropped_too_sparse": p["stats"].get("too_sparse_phrases", 0),
            "track_stats": _track_stats(p["stats"], fc),
        }
    return out


def _reasons(skipped: list[dict], limit: int = 5) -> str:
    if not skipped:
        return ""
    lines = [f"\n  {s['file']}: {s['reason']}" for s in skipped[:limit]]
    more = f"\n  ... and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return "; skipped files:" + "".join(lines) + more


def summary_text(result: BuildResult) -> str:
    """The one-screen summary printed at the end of a build."""
    m = result.manifest
    c = m["counts"]
    fc = m["feature_config"]
    head = "data build: up to date, nothing to do" if result.no_op else f"data build: done in {result.seconds:.1f} s"
    lines = [head,
             f"  source      {m['source']}  ({m['kind']}, "
             + (f"label {m['labels'][0]!r})" if len(m["labels"]) == 1 else f"labels {', '.join(m['labels'])})"),
             f"  output      {result.out}",
             f"  files       {c['files_ok']} used, {c['files_skipped']} skipped (of {c['files_listed']})",
             f"  examples    {c['examples']} ({c['train_examples']} train / {c['val_examples']} val) "
             f"in {c['shards']} shards, shape {m['example_shape']}",
             f"  features    {m['feature_hash']}  "
             + (f"{fc['bars']} bars x {fc['steps_per_bar']} steps, pitches {fc['pitch_low']}:{fc['pitch_high']}, "
                f"transpose {fc['transpose']}" if m["kind"] == "pianoroll"
                else f"{fc['sample_rate_hz']} Hz, {fc['n_mels']} mels, hop {fc['hop_length']}, "
                     f"{fc['clip_seconds']} s clips")]
    if m.get("instruments"):
        lines.append(f"  labels      pitches {min(m['pitches'])}..{max(m['pitches'])} ({len(m['pitches'])}), "
                     f"instruments {', '.join(m['instruments'])}")
    if len(m["labels"]) > 1:
        for name, p in m.get("per_label", {}).items():
            lines.append(f"  {name:<11} {p['files_ok']} files used, {p['files_skipped']} skipped; {p['examples']} "
                         f"examples ({p['train_examples']} train / {p['val_examples']} val)")
    if m["kind"] == "pianoroll":
        if c.get("phrases_dropped_out_of_pitch_range"):
            lines.append(f"  dropped     {c['phrases_dropped_out_of_pitch_range']} phrases with notes outside the "
                         "pitch range (widen --pitch-range to keep them)")
        for name, t in m["track_stats"].items():
            lines.append(f"  {name:<11} sounds {t['active_step_fraction']:.0%} of steps, "
                         f"empty bars {t['empty_bar_fraction']:.0%}, pitches {t['pitch_min']}..{t['pitch_max']}")
    if m["skipped"]:
        lines.append("  skipped (first 8; all are in manifest.json):")
        for s in m["skipped"][:8]:
            lines.append(f"    {os.path.basename(s['file'])}: {s['reason']}")
    if m["warnings"]:
        lines.append(f"  warnings    {len(m['warnings'])} (see manifest.json)")
    return "\n".join(lines)
