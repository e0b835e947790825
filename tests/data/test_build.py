"""``musicgan data build`` end to end on a shared Ray instance: shards, manifest, no-op, bad input, readers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import pyarrow.parquet as pq
import pytest

from musicgan.config import FeatureConfig
from musicgan.data import shards as S
from musicgan.data.build import BuildError, build
from tests.midi_factory import midi_bytes

pytestmark = pytest.mark.ray
STEP = 120


def test_bach_build_writes_shards_and_manifest(bach_data):
    m = bach_data.manifest
    out = Path(bach_data.out)
    assert m["format"] == S.FORMAT and m["source"] == "bach"
    assert m["counts"]["files_ok"] >= 20
    assert m["example_shape"] == [4, 64, 48]
    assert m["feature_hash"] == FeatureConfig().hash()
    rows = sum(pq.read_metadata(out / s["path"]).num_rows for s in m["shards"])
    assert rows == m["counts"]["examples"] == m["counts"]["train_examples"] + m["counts"]["val_examples"]
    assert m["counts"]["val_examples"] > 0
    assert set(m["track_stats"]) == {"soprano", "alto", "tenor", "bass"}
    # soprano sits above bass
    assert m["track_stats"]["soprano"]["pitch_mean"] > m["track_stats"]["bass"]["pitch_mean"] + 10
    assert not list(out.glob(".*tmp*")), "no temporary files left behind"
    for pkg in ("ray", "symusic", "music21", "pyarrow"):
        assert m["versions"][pkg]


def test_rebuild_is_a_no_op_and_force_rebuilds(bach_data):
    out = bach_data.out
    before = {p.name: p.stat().st_mtime_ns for p in Path(out).glob("shard-*.parquet")}
    again = build("bach", out, FeatureConfig(), limit=24, files_per_shard=8, progress=False)
    assert again.no_op
    assert {p.name: p.stat().st_mtime_ns for p in Path(out).glob("shard-*.parquet")} == before
    # a different feature config is a different build: refused without force, naming the difference
    with pytest.raises(BuildError, match=r"different config \(hop_bars 1 -> 2\).*--force"):
        build("bach", out, FeatureConfig(hop_bars=2), limit=24, files_per_shard=8, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in Path(out).glob("shard-*.parquet")} == before
    changed = build("bach", out, FeatureConfig(hop_bars=2), limit=24, files_per_shard=8, progress=False, force=True)
    assert not changed.no_op
    assert changed.manifest["counts"]["examples"] < bach_data.manifest["counts"]["examples"]
    assert S.load_manifest(out)["feature_config"]["hop_bars"] == 2
    restored = build("bach", out, FeatureConfig(), limit=24, files_per_shard=8, progress=False, force=True)
    assert not restored.no_op and restored.manifest["counts"] == bach_data.manifest["counts"]
    assert not [p for p in Path(out).parent.iterdir() if p.name.startswith(f".{Path(out).name}.")], \
        "no temporary folder left beside the build"


def test_shard_reader_decodes_what_the_files_hold(bach_data, bach_midi):
    from musicgan.data.pianoroll import pianoroll_of_file

    reader = S.ShardReader(bach_data.out, split=None)
    arrays = reader.arrays()
    assert arrays["x"].shape == (bach_data.manifest["counts"]["examples"], 4, 64, 48)
    assert set(np.unique(arrays["x"])) <= {0.0, 1.0}
    # phrase i of a file is the roll's bars [start, start+4)
    first = arrays["source"][0]
    path = next(p for p in bach_midi if p.name == first)
    full = pianoroll_of_file(path.read_bytes(), FeatureConfig())
    rows = np.flatnonzero(arrays["source"] == first)
    for r in rows[:3]:
        start = int(reader.tables().__next__().column("start")[int(r)].as_py()) * 16
        np.testing.assert_array_equal(arrays["x"][r].astype(bool), full[:, start : start + 64])
    train = S.ShardReader(bach_data.out, split="train").arrays()
    val = S.ShardReader(bach_data.out, split="val").arrays()
    assert len(train["x"]) + len(val["x"]) == len(arrays["x"])
    assert not set(train["source"]) & set(val["source"]), "a piece is either train or val, never both"


def test_ray_dataset_streams_torch_batches(bach_data):
    ds = S.ray_dataset(bach_data.out, split="train")
    n, shapes = 0, set()
    for batch in ds.iter_torch_batches(batch_size=64, local_shuffle_buffer_size=256):
        shapes.add(tuple(batch["x"].shape[1:]))
        assert batch["x"].dtype == torch.uint8 and int(batch["x"].max()) == 1
        n += len(batch["x"])
    assert shapes == {(4, 64, 48)}
    assert n == bach_data.manifest["counts"]["train_examples"]


def test_small_task_reader_gives_the_same_rows(bach_data):
    """Trials read with fractional-CPU tasks (no whole-CPU planning tasks); same rows, same order-free content."""
    def rows(ds):
        out = []
        for b in ds.iter_batches(batch_size=128, batch_format="numpy"):
            out += [(int(lab), x.tobytes()) for lab, x in zip(b["label"], b["x"])]
        return sorted(out)

    for split in ("train", "val"):
        plain = rows(S.ray_dataset(bach_data.out, split=split))
        small = S.ray_dataset(bach_data.out, split=split, cpus_per_task=0.25)
        assert "ReadParquet" not in str(small) and rows(small) == plain
        assert len(plain) == bach_data.manifest["counts"][f"{split}_examples"]


def _bad_input_folder(root: Path, bach_midi) -> list[str]:
    root.mkdir()
    good = bach_midi[:4]
    for p in good:
        shutil.copyfile(p, root / p.name)
    (root / "sub").mkdir()
    shutil.copyfile(bach_midi[4], root / "sub" / "nested.MID")
    data = bach_midi[5].read_bytes()
    (root / "truncated.mid").write_bytes(data[: len(data) // 2])
    (root / "random.mid").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "empty.mid").write_bytes(b"")
    (root / "notes.mid").write_text("these are my notes for the concert, not a MIDI file\n")
    (root / "no_notes.mid").write_bytes(midi_bytes([[]]))
    (root / "bad_meter.mid").write_bytes(midi_bytes([[(i * STEP, (i + 1) * STEP, 60) for i in range(128)]] * 4,
                                                    numerator=0))
    # absurd tempo is harmless on a tick grid: kept, with a warning
    (root / "absurd_tempo.mid").write_bytes(midi_bytes([[(i * STEP, (i + 1) * STEP, 60 + i % 12) for i in range(128)]] * 4,
                                                       tempo_us=1))
    # very large: 4 tracks x 25,000 notes (about 400 KB), processed in full
    big = [[(i * STEP, (i + 1) * STEP, 48 + (i * 7 + t) % 24) for i in range(25_000)] for t in range(4)]
    (root / "huge.mid").write_bytes(midi_bytes(big))
    (root / "readme.txt").write_text("not music")
    return [p.name for p in good] + ["sub/nested.MID", "absurd_tempo.mid", "huge.mid"]


def test_bad_input_folder_builds_and_lists_every_bad_file(ray_instance, bach_midi, tmp_path):
    valid = _bad_input_folder(tmp_path / "mixed", bach_midi)
    result = build(str(tmp_path / "mixed"), str(tmp_path / "out"), FeatureConfig(), files_per_shard=4, progress=False)
    m = result.manifest
    used = set(S.ShardReader(str(tmp_path / "out"), split=None).arrays()["source"])
    assert used == set(valid)
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"truncated.mid", "random.mid", "empty.mid", "notes.mid", "no_notes.mid", "bad_meter.mid"}
    assert "empty" in reasons["empty.mid"]
    assert "not a MIDI" in reasons["notes.mid"] and "not a MIDI" in reasons["random.mid"]
    assert "no notes" in reasons["no_notes.mid"]
    assert "time signature" in reasons["bad_meter.mid"]
    assert reasons["truncated.mid"]
    assert any("absurd_tempo.mid" in w for w in m["warnings"])
    assert m["counts"]["files_ok"] == len(valid) and m["counts"]["files_skipped"] == 6
    huge_rows = sum(1 for s in S.ShardReader(str(tmp_path / "out"), split=None).arrays()["source"] if s == "huge.mid")
    assert huge_rows == 25_000 // 16 - 3  # every downbeat of the 1,562-bar file but the last three


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    env.pop("MUSICGAN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "musicgan.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_clear_errors_and_no_traceback(tmp_path):
    missing = run_cli("data", "build", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "afile").write_text("x")
    unwritable = run_cli("data", "build", "--source", "bach", "--out", str(tmp_path / "afile" / "out"))
    assert unwritable.returncode == 2 and "cannot write to output" in unwritable.stderr
    bad_range = run_cli("data", "build", "--out", str(tmp_path / "o"), "--pitch-range", "high:low")
    assert bad_range.returncode == 2 and "LOW:HIGH" in bad_range.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("no music here")
    nothing = run_cli("data", "build", "--source", str(empty), "--out", str(tmp_path / "o"))
    assert nothing.returncode == 2 and "no MIDI" in nothing.stderr
    for r in (missing, unwritable, bad_range, nothing):
        assert "Traceback" not in r.stderr + r.stdout


def test_cli_no_valid_file_is_an_error_listing_reasons(tmp_path):
    src = tmp_path / "allbad"
    src.mkdir()
    (src / "a.mid").write_bytes(b"")
    (src / "b.mid").write_text("text")
    r = run_cli("data", "build", "--source", str(src), "--out", str(tmp_path / "o"), "--quiet")
    assert r.returncode == 2, r.stderr
    assert "no valid file among 2" in r.stderr and "a.mid: empty" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_interrupted_build_leaves_no_manifest_and_readers_refuse(tmp_path):
    out = tmp_path / "half"
    out.mkdir()
    (out / "shard-00000.parquet").write_bytes(b"partial")
    with pytest.raises(S.DataError, match="interrupted"):
        S.load_manifest(str(out))
    with pytest.raises(S.DataError, match="does not exist"):
        S.load_manifest(str(tmp_path / "never"))


def test_build_error_for_file_source(tmp_path):
    f = tmp_path / "one.mid"
    f.write_bytes(midi_bytes([[(0, 100, 60)]]))
    with pytest.raises(BuildError, match="is a file"):
        build(str(f), str(tmp_path / "o"), FeatureConfig(), progress=False)
