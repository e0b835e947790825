"""``musicgan data build``: music files -> Parquet shards + ``manifest.json``, as a Ray Data pipeline.

1. List the input files (and convert/render the embedded corpora once, cached).
2. Group them into shards; a Ray Data ``map`` parses each group in parallel (symusic for MIDI,
   librosa for audio), cuts phrases/clips, and writes one shard through a temporary name.
3. The driver gathers each shard's counts, statistics and skipped files and writes the
   manifest last. A killed build therefore has no manifest, and readers refuse it.

A build is fingerprinted by its feature config and its inputs (path, size, mtime); rebuilding
an identical fingerprint does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from dataclasses import dataclass, field

import numpy as np

from musicgan.config import FeatureConfig, from_dict, to_dict
from musicgan.data import shards as S
from musicgan.data.audio import AUDIO_SUFFIXES
from musicgan.data.notes import LABELS_FILE
from musicgan.data.pianoroll import BadInput
from musicgan.storage import Location, list_files, resolve

MIDI_SUFFIXES = (".mid", ".midi")
EMBEDDED = ("bach", "folk", "bach-audio", "notes")


class BuildError(Exception):
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
        inputs = _folder_inputs(resolve(str(folder)), limit)
        inputs.label, inputs.source_id = "notes", f"embedded:notes:{backend}:{folder.name}"
        return inputs
    if source in ("bach", "folk"):
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
        raise BuildError(f"source {source} does not exist (expected 'bach', 'folk', 'bach-audio', 'notes', "
                         "or a folder/URI of MIDI or audio files)")
    if info.type != pafs.FileType.Directory:
        raise BuildError(f"source {source} is a file; give the folder that holds the music files")
    return _folder_inputs(loc, limit)


def _folder_inputs(loc: Location, limit: int | None) -> Inputs:
    """A folder of MIDI files, or of audio files with an optional ``labels.csv`` (file,pitch,instrument)."""
    source = loc.uri
    midi = list_files(loc, MIDI_SUFFIXES)
    audio = list_files(loc, AUDIO_SUFFIXES)
    label = posixpath.basename(loc.path.rstrip("/")) or "music"
    if midi:
        files, kind = midi, "pianoroll"
    elif audio:
        files, kind = audio, "mel"
    else:
        raise BuildError(f"no MIDI (.mid/.midi) or audio ({'/'.join(s[1:] for s in AUDIO_SUFFIXES)}) "
                         f"files under {source}")
    labels, skipped = {}, []
    if kind == "mel" and loc.join(LABELS_FILE).exists():
        from musicgan.data.notes import read_labels

        labels = read_labels(loc.join(LABELS_FILE).read_bytes().decode("utf-8", "replace"), f"{source}/{LABELS_FILE}")
        unlabelled = [f for f in files if _rel(loc, f[0]) not in labels]
        skipped = [{"file": _rel(loc, f[0]), "reason": f"not listed in {LABELS_FILE}"} for f in unlabelled]
        files = [f for f in files if _rel(loc, f[0]) in labels]
    if limit:
        files = files[:limit]
    labels = {_rel(loc, f[0]): labels[_rel(loc, f[0])] for f in files} if labels else {}
    return Inputs(kind, label, loc, files, skipped, source_id=loc.uri, note_labels=labels)


def fingerprint(inputs: Inputs, fc: FeatureConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": S.FORMAT, "features": to_dict(fc), "source": inputs.source_id},
                        sort_keys=True).encode())
    for path, size, mtime in inputs.files:
        h.update(f"{_rel(inputs.base, path)}\0{size}\0{mtime}\n".encode())
    h.update(json.dumps(sorted(inputs.note_labels.items())).encode())
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
            "notes_out_of_range_phrases": 0, "too_sparse_phrases": 0}


def _pianoroll_stats(stats: dict, phrases: np.ndarray, fc: FeatureConfig) -> None:
    """Accumulate per-track statistics of time-major phrases ``[n, steps, tracks, pitches]``."""
    n, steps, t, pitches = phrases.shape
    stats["phrases"] += n
    sounding = phrases.any(axis=3)  # [n, steps, t]
    bars = sounding.reshape(n, fc.bars, fc.steps_per_bar, t).any(axis=2)  # [n, bars, t]
    per_pitch = phrases.sum(axis=(0, 1))  # [t, pitches]
    for i in range(t):
        stats["active_steps"][i] += int(sounding[..., i].sum())
        stats["empty_bars"][i] += int((~bars[..., i]).sum())
        for j in np.flatnonzero(per_pitch[i]):
            stats["pitch_hist"][i][fc.pitch_low + j] += int(per_pitch[i, j])


def process_group(row: dict, out_uri: str, base_uri: str, fc_dict: dict, label: str,
                  row_group_rows: int, note_labels: dict | None = None) -> dict:
    """Parse every file of one group and write ``shard-NNNNN.parquet``; return its bookkeeping.

    ``note_labels`` maps a relative file name to ``[MIDI pitch, instrument index]`` (single-note audio).
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
    for path in files:
        rel = _rel(base, path)
        try:
            with base.fs.open_input_stream(path) as f:
                data = f.read()
        except OSError as e:
            skipped.append({"file": rel, "reason": f"unreadable: {e}"[:300]})
            continue
        try:
            if fc.kind == "mel":
                mels, starts = audio_to_clips(decode_audio(data, path, fc.sample_rate_hz), fc)
                xs, n = S.encode_mel(mels[:, None]), len(mels)
                starts_col, transposes = starts, np.zeros(n, np.int8)
                stats["clips"] += n
                stats["db_sum"] += float(mels.sum(dtype=np.float64))
                stats["db_sq_sum"] += float((mels.astype(np.float64) ** 2).sum())
                stats["values"] += int(mels.size)
            else:
                result = midi_to_phrases(data, fc)
                stats["notes_out_of_range_phrases"] += result.phrases_out_of_range
                stats["too_sparse_phrases"] += result.phrases_too_sparse
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
        except BadInput as e:
            skipped.append({"file": rel, "reason": str(e)})
            continue
        except Exception as e:  # a parser bug must not sink the build: record it like bad input
            skipped.append({"file": rel, "reason": f"unexpected {type(e).__name__}: {e}"[:300]})
            continue
        files_ok += 1
        split = S.split_of(rel, fc.val_fraction)
        cols["x"].extend(xs)
        cols["label"].extend([label] * n)
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
    summary = {"shard": shard, "files_ok": files_ok, "skipped": skipped, "warnings": warnings, "stats": stats}
    return {"shard_id": shard_id, "summary_json": json.dumps(summary)}


# ---------------------------------------------------------------------------------------------
# 3. the build


def _merge_stats(total: dict, part: dict) -> None:
    for k, v in part.items():
        if isinstance(v, list) and v and isinstance(v[0], list):
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


def check_writable(out: Location, out_arg: str) -> None:
    try:
        out.mkdirs()
        probe = out.join(".musicgan-write-test")
        probe.write_bytes_atomic(b"ok")
        out.fs.delete_file(probe.path)
    except Exception as e:
        raise BuildError(f"cannot write to output {out_arg}: {str(e).splitlines()[0]}") from None


def build(source: str, out_dir: str, fc: FeatureConfig, limit: int | None = None, files_per_shard: int = 32,
          row_group_rows: int = 256, progress: bool = True, force: bool = False, instruments: list[str] | None = None,
          velocities: list[int] | None = None) -> BuildResult:
    """Build shards from ``source``. ``instruments`` and ``velocities`` shape the ``notes`` grid
    (its pitches are ``fc.pitch_low``..``fc.pitch_high``, high exclusive)."""
    t0 = time.time()
    fc = fc.validate()
    out = resolve(out_dir)
    check_writable(out, out_dir)
    inputs = resolve_inputs(source, fc, limit, progress, instruments, velocities)
    if inputs.kind != fc.kind:
        fc = from_dict(FeatureConfig, {**to_dict(fc), "kind": inputs.kind})
    if inputs.kind == "mel" and fc.track_names != ["audio"]:
        fc.track_names = ["audio"]
    if not inputs.files:
        raise BuildError(f"no input files for source {source}" + _reasons(inputs.skipped))
    fp = fingerprint(inputs, fc)

    manifest_loc = out.join(S.MANIFEST)
    if manifest_loc.exists() and not force:
        try:
            old = manifest_loc.read_json()
        except Exception:
            old = {}
        if old.get("input_fingerprint") == fp and all(out.join(s["path"]).exists() for s in old.get("shards", [])):
            return BuildResult(out.uri, old, no_op=True, seconds=time.time() - t0)
        out.fs.delete_file(manifest_loc.path)  # from here on the directory is an unfinished build

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
                       row_group_rows=row_group_rows, note_labels=note_labels),
    )
    results = sorted(ds.take_all(), key=lambda r: r["shard_id"])

    stats, shard_list, skipped, warnings, files_ok = _empty_stats(fc), [], list(inputs.skipped), [], 0
    for r in results:
        s = json.loads(r["summary_json"])
        files_ok += s["files_ok"]
        skipped.extend(s["skipped"])
        warnings.extend(s["warnings"])
        _merge_stats(stats, s["stats"])
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
        "example_shape": fc.example_shape(),
        "labels": [inputs.label],
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
        "shards": shard_list,
        "skipped": skipped,
        "warnings": warnings,
        "versions": _versions(),
        "build_seconds": round(time.time() - t0, 2),
        "created_unix": int(time.time()),
    }
    # Shards of an earlier, different build that this one did not rewrite.
    keep = {s["path"] for s in shard_list}
    for path, _, _ in list_files(out, (".parquet",)):
        name = posixpath.basename(path)
        if name.startswith("shard-") and name not in keep and posixpath.dirname(path) == out.path:
            out.fs.delete_file(path)
    manifest_loc.write_json_atomic(manifest)
    return BuildResult(out.uri, manifest, no_op=False, seconds=time.time() - t0)


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
             f"  source      {m['source']}  ({m['kind']}, label {m['labels'][0]!r})",
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
