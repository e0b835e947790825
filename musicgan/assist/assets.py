"""What a served model ships beside its weights, made from the data it was trained on: the originality
index of its training phrases (:mod:`musicgan.originality`) and a few held-out example melodies to
harmonize (the page's picker, the demo's curl line).

:func:`write_assets` writes both into a folder: the registry's version folder when a model is
promoted (:func:`musicgan.registry.promote`), or a checkpoint folder. :func:`read_assets` finds them
again; a model promoted without its data around simply has none (the API then says so).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from musicgan.families import family_for_kind
from musicgan.originality import INDEX_FILE, OriginalityIndex

EXAMPLES_FILE = "examples.json"
EXAMPLE_BARS = 8
MAX_EXAMPLES = 4
PREFERRED = ("bwv1.6",)
"""Held-out chorales offered first when the build holds them out (bwv1.6 is the README's example)."""


def example_id(source: str) -> str:
    """``bach__bwv1.6.mid`` -> ``bwv1.6``: the corpus prefix and the extension dropped."""
    stem = source.rsplit("/", 1)[-1]
    stem = stem[: -len(".mid")] if stem.endswith(".mid") else stem
    return stem.split("__", 1)[-1]


def example_melodies(data_dir: str, n: int = MAX_EXAMPLES, bars: int = EXAMPLE_BARS, track: int = 0) -> list[dict]:
    """The first ``bars`` bars of the top voice of ``n`` held-out (val split) pieces, as JSON note lists.

    A piece qualifies when its val phrases cover bars 0..bars-1 (phrases start a bar apart) and its
    melody has notes; preferred pieces come first, then the rest in name order."""
    from musicgan.assist.evaluate import _val_with_starts
    from musicgan.data.pianoroll import roll_notes
    from musicgan.data.shards import load_manifest

    manifest = load_manifest(data_dir)
    if not family_for_kind(manifest["kind"]).assistant:
        return []
    fc = manifest["feature_config"]
    spb, phrase_bars, low = int(fc["steps_per_bar"]), int(fc["bars"]), int(fc["pitch_low"])
    everything, _ = _val_with_starts(data_dir, None)
    by_source: dict[str, dict[int, np.ndarray]] = {}
    for x, source, start in zip(everything["x"], everything["source"], everything["start"]):
        by_source.setdefault(str(source), {})[int(start)] = x
    ids = sorted(by_source, key=lambda s: (example_id(s) not in PREFERRED, s))
    out = []
    for source in ids:
        phrases = by_source[source]
        starts = list(range(0, bars, phrase_bars))
        if any(s not in phrases for s in starts):
            continue
        line = np.concatenate([phrases[s][track] for s in starts], 0)[: bars * spb]
        p, s, e = roll_notes(line)
        if len(p) < bars:  # a melody that rests most of the time is no example
            continue
        order = np.lexsort((p, s))
        notes = [{"pitch": int(low + p[i]), "start_beat": float(s[i]) / (spb // 4),
                  "duration_beats": float(e[i] - s[i]) / (spb // 4)} for i in order]
        name = fc["track_names"][track]
        out.append({"id": example_id(source), "title": f"{example_id(source)}: the {name}, bars 1-{bars}",
                    "voice": name, "n_bars": bars, "tempo_qpm": 90.0, "notes": notes})
        if len(out) == n:
            break
    return out


def write_assets(data_dir: str, dest: str | os.PathLike) -> dict:
    """Write the originality index of ``data_dir``'s training phrases and its example melodies into ``dest``;
    returns what was written (``{"index_phrases": N, "examples": [ids]}``). Audio builds get neither."""
    from musicgan.data.shards import ShardReader, load_manifest

    dest = Path(dest)
    manifest = load_manifest(data_dir)
    if not family_for_kind(manifest["kind"]).assistant:
        return {"index_phrases": 0, "examples": []}
    x = ShardReader(data_dir, split="train").arrays()["x"] > 0
    index = OriginalityIndex.build(x, int(manifest["feature_config"]["steps_per_bar"]))
    index.save(dest / INDEX_FILE)
    examples = example_melodies(data_dir)
    tmp = dest / f".{EXAMPLES_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(examples, indent=1))
    os.replace(tmp, dest / EXAMPLES_FILE)
    return {"index_phrases": index.n_phrases, "examples": [e["id"] for e in examples]}


def read_assets(*folders: str | os.PathLike) -> tuple[OriginalityIndex | None, list[dict]]:
    """The index and examples from the first of ``folders`` that has them (each looked up on its own)."""
    index, examples = None, None
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder)
        if index is None and (folder / INDEX_FILE).is_file():
            index = OriginalityIndex.load(folder / INDEX_FILE)
        if examples is None and (folder / EXAMPLES_FILE).is_file():
            examples = json.loads((folder / EXAMPLES_FILE).read_text())
    return index, list(examples or [])
