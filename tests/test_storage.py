"""Local paths and filesystem URIs behave the same; atomic writes leave no partial file."""

from __future__ import annotations

import numpy as np
import pyarrow.fs as pafs
import pytest

from musicgan.storage import list_files, resolve


def test_local_path_and_file_uri_resolve_alike(tmp_path):
    a = resolve(tmp_path)
    b = resolve(f"file://{tmp_path}")
    assert a.path == b.path and a.is_local and b.is_local


def test_atomic_write_and_listing(tmp_path):
    loc = resolve(tmp_path / "d")
    loc.mkdirs()
    target = loc.join("x.json")
    target.write_json_atomic({"a": 1})
    assert target.read_json() == {"a": 1}
    target.write_json_atomic({"a": 2})
    assert target.read_json() == {"a": 2}
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.json"]  # no temp file left
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "b.MID").write_bytes(b"1")
    (tmp_path / "d" / ".hidden.mid").write_bytes(b"1")
    files = list_files(loc, (".mid", ".json"))
    assert [p.rsplit("/", 1)[1] for p, _, _ in files] == ["b.MID", "x.json"]


def test_mock_filesystem_uri_round_trip():
    fs, path = pafs.FileSystem.from_uri("mock:///bucket/data")
    assert type(fs).__name__ == "_MockFileSystem"
    loc = resolve("mock:///bucket/data")
    # each from_uri call makes a fresh in-memory filesystem, so use one Location throughout
    loc.mkdirs()
    f = loc.join("m.json")
    f.write_json_atomic({"ok": True})
    assert f.read_json() == {"ok": True} and f.exists() and not loc.join("nope").exists()


def test_write_atomic_leaves_no_temp_file_and_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = resolve(tmp_path / "report.csv")
    target.write_atomic(lambda f: f.write(b"step,loss\r\n1,0.5\r\n"))
    assert (tmp_path / "report.csv").read_bytes() == b"step,loss\r\n1,0.5\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]

    def half_then_fail(f):
        f.write(b"step,lo")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        target.write_atomic(half_then_fail)
    assert (tmp_path / "report.csv").read_bytes() == b"step,loss\r\n1,0.5\r\n"  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]  # the half-written temporary is gone


def test_write_json_atomic_passes_json_options(tmp_path):
    target = resolve(tmp_path / "r.json")
    target.write_json_atomic({"x": np.float32(0.5)}, default=float)
    assert target.read_json() == {"x": 0.5}
