"""Data safety of ``musicgan data build``: a failed or refused rebuild keeps the last good build byte for
byte, a failed build leaves nothing behind, links and odd names in a source are skipped with their
reason, and size limits apply before a file is read or decoded."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from musicgan.config import FeatureConfig, to_dict
from musicgan.data import shards as S
from musicgan.data.build import BuildError, build, process_group, resolve_inputs
from musicgan.data.pianoroll import BadInput
from musicgan.storage import Location, resolve
from tests.midi_factory import midi_bytes

STEP = 120


def chorale(seed: int, bars: int = 8) -> bytes:
    """Four busy voices (every step sounds), distinct per seed: each gives ``bars - 3`` phrases."""
    return midi_bytes([[(i * 4 * STEP, (i + 1) * 4 * STEP, 48 + 7 * t + (i * (seed + 1)) % 5)
                        for i in range(bars * 4)] for t in range(4)])


def music_folder(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"piece{i}.mid").write_bytes(chorale(i))
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# ---------------------------------------------------------------------------------------------
# item 9: a rebuild never costs the last good build


def test_failed_rebuild_leaves_the_previous_build_readable_byte_for_byte(ray_instance, tmp_path):
    src, out = music_folder(tmp_path / "src"), tmp_path / "out"
    first = build(str(src), str(out), FeatureConfig(), progress=False)
    assert first.manifest["counts"]["files_ok"] == 3
    before = snapshot(out)
    rows = S.ShardReader(str(out), split=None).arrays()["x"]

    # another config without --force: refused before any work, naming what differs
    with pytest.raises(BuildError, match=r"different config \(bars 4 -> 2\); pass --force"):
        build(str(src), str(out), FeatureConfig(bars=2), progress=False)
    assert snapshot(out) == before

    # the sources go bad: the new build finds no valid file, with and without --force and another config
    for p in src.iterdir():
        p.write_bytes(b"not a MIDI file any more")
    with pytest.raises(BuildError, match="no valid file among 3"):
        build(str(src), str(out), FeatureConfig(), progress=False)
    with pytest.raises(BuildError, match="no valid file among 3"):
        build(str(src), str(out), FeatureConfig(bars=2), progress=False, force=True)

    assert snapshot(out) == before, "the previous build is byte for byte what it was"
    np.testing.assert_array_equal(S.ShardReader(str(out), split=None).arrays()["x"], rows)
    assert leftovers(tmp_path, "out") == [], "no temporary folder left beside --out"


def test_rebuild_swaps_in_the_new_build_and_readers_find_it(ray_instance, tmp_path):
    src, out = music_folder(tmp_path / "src", n=2), tmp_path / "out"
    build(str(src), str(out), FeatureConfig(), progress=False)
    (src / "piece2.mid").write_bytes(chorale(2))  # same config, one more file: no --force needed
    again = build(str(src), str(out), FeatureConfig(), progress=False)
    assert not again.no_op and again.manifest["counts"]["files_ok"] == 3
    assert S.load_manifest(str(out)) == json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json"] +
                                                           [s["path"] for s in again.manifest["shards"]])
    n = sum(len(b["x"]) for b in S.ray_dataset(str(out), split=None).iter_batches(batch_size=64))
    assert n == again.manifest["counts"]["examples"] == 3 * 5
    assert build(str(src), str(out), FeatureConfig(), progress=False).no_op
    assert leftovers(tmp_path, "out") == []


def fake_build(out: Path, source: str, fc: FeatureConfig, source_uri: str | None = None) -> None:
    """A manifest as a build writes it (no shards needed for the refusal checks)."""
    out.mkdir()
    manifest = {"format": S.FORMAT, "source": source, "feature_config": to_dict(fc), "input_fingerprint": "old",
                "shards": []}
    if source_uri:
        manifest["source_uri"] = source_uri
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_another_source_or_config_is_refused_without_force_and_says_what_differs(tmp_path):
    src = music_folder(tmp_path / "src")
    out = tmp_path / "out"
    fake_build(out, "bach", FeatureConfig())
    before = snapshot(out)
    with pytest.raises(BuildError) as e:
        build(str(src), str(out), FeatureConfig(pitch_low=40, transpose=[0, 2]), progress=False)
    msg = str(e.value)
    assert f"source 'bach' -> '{src}'" in msg and "pitch_low 36 -> 40" in msg and "transpose [0] -> [0, 2]" in msg
    assert "--force" in msg and "bars" not in msg
    assert snapshot(out) == before and leftovers(tmp_path, "out") == []


def test_a_folder_holding_other_files_is_never_replaced(tmp_path):
    src = music_folder(tmp_path / "src")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("my only copy")
    for force in (False, True):
        with pytest.raises(BuildError, match=r"not part of a musicgan data build \(thesis.tex\)"):
            build(str(src), str(out), FeatureConfig(), progress=False, force=force)
    assert snapshot(out) == {"thesis.tex": b"my only copy"}


def test_cli_refusal_is_a_clear_error(tmp_path):
    from tests.data.test_build import run_cli

    src = music_folder(tmp_path / "src")
    out = tmp_path / "out"
    fake_build(out, str(src), FeatureConfig(), source_uri=str(src))
    r = run_cli("data", "build", "--source", str(src), "--out", str(out), "--hop-bars", "2", "--quiet")
    assert r.returncode == 2 and "hop_bars 1 -> 2" in r.stderr and "--force" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_swap_on_an_object_store_keeps_only_the_new_build():
    """Object stores cannot rename folders: files move one by one, the manifest last."""
    from musicgan.data.build import swap_in

    fs = pafs._MockFileSystem()
    for name, data in (("out/manifest.json", b"old"), ("out/shard-00000.parquet", b"old0"),
                       ("out/shard-00001.parquet", b"old1"), ("new/shard-00000.parquet", b"new0"),
                       ("new/manifest.json", b"new")):
        fs.create_dir(os.path.dirname(name), recursive=True)
        with fs.open_output_stream(name) as f:
            f.write(data)
    assert not Location(fs, "out", "mock://out").is_local
    swap_in(Location(fs, "new", "mock://new"), Location(fs, "out", "mock://out"))
    left = {i.path: fs.open_input_stream(i.path).read() for i in fs.get_file_info(pafs.FileSelector("", recursive=True))
            if i.type == pafs.FileType.File}
    assert left == {"out/manifest.json": b"new", "out/shard-00000.parquet": b"new0"}


# ---------------------------------------------------------------------------------------------
# item 12: a failed build leaves nothing behind


def test_failed_build_leaves_nothing_behind(ray_instance, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mid").write_bytes(b"text, not MIDI")
    with pytest.raises(BuildError, match="no valid file among 1"):
        build(str(bad), str(tmp_path / "new" / "deep" / "out"), FeatureConfig(), progress=False)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    with pytest.raises(BuildError, match="no MIDI"):
        build(str(nothing), str(tmp_path / "out2"), FeatureConfig(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "nothing"], "no --out, parent or temp folder"


# ---------------------------------------------------------------------------------------------
# item 11: links and names


def linked_folder(root: Path) -> Path:
    src = music_folder(root / "src")
    (src / "sub").mkdir()
    (src / "sub" / "nested.mid").write_bytes(chorale(7))
    os.symlink("..", src / "sub" / "loop")  # sub/loop/sub/loop/... lists every file again
    outside = root / "elsewhere"
    outside.mkdir()
    (outside / "foreign.mid").write_bytes(chorale(8))
    os.symlink(outside, src / "away")
    os.symlink(outside / "foreign.mid", src / "foreign_link.mid")
    os.symlink("piece0.mid", src / "alias.mid")  # the same piece under a second name
    os.symlink("missing.mid", src / "dangling.mid")
    fd = os.open(os.path.join(os.fsencode(src), b"caf\xe9.mid"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, chorale(9))
    os.close(fd)
    os.mkdir(os.path.join(os.fsencode(src), b"dir\xff"))
    return src


def test_listing_visits_each_file_once_and_skips_links_and_bad_names_with_reasons(tmp_path):
    src = linked_folder(tmp_path)
    inputs = resolve_inputs(str(src), FeatureConfig(), None, False)
    files, skipped = inputs.files, inputs.skipped
    assert [os.path.relpath(p, src) for p, _, _ in files] == ["piece0.mid", "piece1.mid", "piece2.mid",
                                                              "sub/nested.mid"]
    reasons = {s["file"]: s["reason"] for s in skipped}
    assert set(reasons) == {"sub/loop", "away", "foreign_link.mid", "alias.mid", "dangling.mid", "caf\\xe9.mid",
                            "dir\\xff"}
    assert "loop" in reasons["sub/loop"] and "not followed" in reasons["sub/loop"]
    assert "outside the source" in reasons["away"] and "outside the source" in reasons["foreign_link.mid"]
    assert "piece0.mid" in reasons["alias.mid"] and "broken" in reasons["dangling.mid"]
    assert "not valid UTF-8" in reasons["caf\\xe9.mid"] and "b'caf\\xe9.mid'" in reasons["caf\\xe9.mid"]
    assert "not valid UTF-8" in reasons["dir\\xff"]


def test_build_of_a_folder_with_a_link_loop_and_a_non_utf8_name(ray_instance, tmp_path):
    src = linked_folder(tmp_path)
    m = build(str(src), str(tmp_path / "out"), FeatureConfig(), progress=False).manifest
    sources = S.ShardReader(str(tmp_path / "out"), split=None).arrays()["source"]
    assert sorted(set(sources)) == ["piece0.mid", "piece1.mid", "piece2.mid", "sub/nested.mid"]
    assert len(sources) == 4 * 5, "each piece once"
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert "loop" in reasons["sub/loop"] and "not valid UTF-8" in reasons["caf\\xe9.mid"]
    assert m["counts"]["files_ok"] == 4 and m["counts"]["files_listed"] == 4 + len(reasons)
    json.dumps(m, ensure_ascii=True)  # the manifest holds only text


# ---------------------------------------------------------------------------------------------
# item 10: limits before reading and decoding


def test_an_oversized_midi_file_is_skipped_from_the_listing_and_never_read(tmp_path):
    src = music_folder(tmp_path / "src", n=2)
    (src / "big.mid").write_bytes(chorale(3, bars=64))
    size = (src / "big.mid").stat().st_size
    fc = FeatureConfig(max_file_bytes=size - 1)
    inputs = resolve_inputs(str(src), fc, None, False)
    assert [os.path.basename(p) for p, _, _ in inputs.files] == ["piece0.mid", "piece1.mid"]
    assert inputs.skipped == [{"file": "big.mid", "reason": f"file too large ({size} bytes > max_file_bytes "
                                                            f"{size - 1}), not read"}]
    # a file that grows after the listing: the worker reads one byte past the limit and no more
    from musicgan.data.build import read_input

    data = read_input(resolve(str(src)), str(src / "big.mid"), fc)
    assert len(data) == size
    assert len(read_input(resolve(str(src)), str(src / "big.mid"), FeatureConfig(max_file_bytes=100))) == 101


def long_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    """A mono 8-bit WAV whose samples are a sparse (unwritten) hole: any length costs no disk."""
    n = int(seconds * rate)
    header = (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8)
              + b"data" + struct.pack("<I", n))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)


def test_long_audio_is_skipped_from_its_header_before_decoding(tmp_path, monkeypatch):
    import soundfile

    from musicgan.data.audio import MAX_AUDIO_SECONDS, decode_audio
    from musicgan.data.build import read_input

    src = tmp_path / "audio"
    src.mkdir()
    long_wav(src / "long.wav", MAX_AUDIO_SECONDS + 50)
    long_wav(src / "short.wav", 0.5)
    fc = FeatureConfig(kind="mel", clip_seconds=1.0, track_names=["audio"])
    row = {"shard_id": 0, "files_json": json.dumps([str(src / "long.wav"), str(src / "short.wav")])}

    def no_decoding(*a, **k):
        raise AssertionError("decoded a file the header rules out")

    monkeypatch.setattr(soundfile.SoundFile, "read", no_decoding)
    with pytest.raises(BadInput, match=r"too long \(1250 s of audio > the 1200 s limit\), not decoded"):
        read_input(resolve(str(src)), str(src / "long.wav"), fc)
    with pytest.raises(BadInput, match="too long"):
        decode_audio((src / "short.wav").read_bytes(), "short.wav", 16000, max_seconds=0.25)
    monkeypatch.undo()

    summary = json.loads(process_group(row, str(tmp_path / "o"), str(src), to_dict(fc), "audio", 64)["summary_json"])
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert reasons["long.wav"].startswith("too long (1250 s")
    assert reasons["short.wav"].startswith("shorter than one clip")  # decoded: under the limit
    assert summary["files_ok"] == 0 and summary["shard"] is None
