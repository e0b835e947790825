"""The model registry: promote into vN atomically, move latest, resolve and load; local and URI roots.
Damaged checkpoints are never promoted, tampered versions never load, racing promoters never collide
and never move latest back."""

from __future__ import annotations

import json
import posixpath
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch

from musicgan import checkpoint as ckpt
from musicgan import registry, storage
from musicgan.config import Config
from musicgan.gan import make_gan
from musicgan.model import build_models
from musicgan.presets import load_preset

DATA = {"feature_config": {}, "feature_hash": "f00d", "example_shape": [2, 32, 12], "labels": ["all"], "bars": 2,
        "steps_per_bar": 16, "pitch_low": 60, "track_names": ["a", "b"]}


def make_run(tmp_path, steps=(3, 6)):
    """A training run folder with checkpoints and a metrics.csv, as training writes them."""
    cfg: Config = load_preset("cpu-tiny")
    torch.manual_seed(0)
    g, d = build_models(cfg.model, DATA["example_shape"], DATA["bars"], 1)
    gan = make_gan(g, d, cfg)
    run = tmp_path / "run"
    for s in steps:
        gan.step = s
        ckpt.save(run / f"checkpoint_{s:06d}", gan, cfg, DATA)
    (run / "metrics.csv").write_text("step,FMD,diversity\n3,9.5,0.5\n6,4.25,0.75\n")
    (run / "config.json").write_text(json.dumps({"data_dir": None}))
    return run, gan


def test_promote_twice_makes_v1_v2_and_moves_latest(tmp_path):
    run, gan = make_run(tmp_path)
    reg = tmp_path / "models"
    first = registry.promote(run, str(reg), "bach")
    second = registry.promote(run / "checkpoint_000003", str(reg), "bach")
    assert (first["version"], second["version"]) == ("v1", "v2")
    assert json.loads((reg / "bach" / "latest").read_text()) == {"version": "v2"}
    rec = json.loads((reg / "bach" / "v1" / "model.json").read_text())
    assert rec["step"] == 6 and rec["metrics"] == {"FMD": 4.25, "diversity": 0.75}
    assert rec["provenance"]["feature_hash"] == "f00d" and rec["provenance"]["trial_id"] is None
    assert rec["provenance"]["checkpoint"].endswith("checkpoint_000006")
    assert rec["files_sha256"] == ckpt.file_hashes(run / "checkpoint_000006")
    assert set(rec["files_sha256"]) == set(ckpt.FILES)
    # no temporaries left (.lock is the promoters' lock file, not a temporary)
    assert sorted(p.name for p in (reg / "bach").iterdir()) == [".lock", "latest", "v1", "v2"]

    for ref, step in ((reg / "bach" / "latest", 3), (reg / "bach", 3), (reg / "bach" / "v1", 6), (run, 6)):
        path, record = registry.resolve(str(ref))
        g, cfg, data, meta = ckpt.load_generator(path)
        assert meta["step"] == step
        assert (record is None) == (ref == run)
    g, *_ = ckpt.load_generator(registry.resolve(str(reg / "bach" / "v1"))[0])
    for a, b in zip(g.state_dict().values(), gan.g_ema.state_dict().values()):
        assert torch.equal(a, b)


def test_promote_from_a_search_takes_its_best_trial(tmp_path):
    run, _ = make_run(tmp_path)
    search = tmp_path / "search"
    search.mkdir()
    best = {"trial_id": "abc_00001", "checkpoint": str(run / "checkpoint_000003"), "fmd": 9.5, "params": {"x": 1}}
    (search / "best.json").write_text(json.dumps({"best": best}))
    (search / "search.json").write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    rec = registry.promote(search, str(tmp_path / "models"), "s")
    assert rec["step"] == 3 and rec["metrics"]["FMD"] == 9.5
    assert rec["provenance"]["trial_id"] == "abc_00001" and rec["provenance"]["search_run"] == str(search)


def test_registry_on_a_pyarrow_filesystem_uri(tmp_path, monkeypatch):
    """pyarrow's in-memory filesystem: the same code path as s3:// or gs:// (download on resolve)."""
    monkeypatch.setenv("MUSICGAN_CACHE_DIR", str(tmp_path / "cache"))
    memory, _ = pafs.FileSystem.from_uri("mock:///")
    # every from_uri call makes a fresh, empty mock filesystem: share one, as a bucket would be shared
    monkeypatch.setattr(storage, "filesystem_from_uri", lambda uri: (memory, uri.split("://", 1)[1]))
    run, _ = make_run(tmp_path)
    rec = registry.promote(run, "mock://bucket/models", "m")
    assert rec["uri"] == "mock://bucket/models/m/v1"
    assert memory.get_file_info("bucket/models/m/v1/checkpoint/generator_ema.pt").size > 0
    path, record = registry.resolve("mock://bucket/models/m/latest")
    assert record["version"] == "v1" and str(path).startswith(str(tmp_path / "cache"))
    assert ckpt.load_generator(path)[3]["step"] == 6
    assert ckpt.file_hashes(path) == record["files_sha256"]
    # a damaged cached copy is fetched again; a damaged remote version is refused
    (path / "generator_ema.pt").write_bytes(b"x")
    assert ckpt.load_generator(registry.resolve("mock://bucket/models/m/v1")[0])[3]["step"] == 6
    registry.promote(run, "mock://bucket/models", "m")
    with memory.open_output_stream("bucket/models/m/v2/checkpoint/generator_ema.pt") as f:
        f.write(b"not the promoted weights")
    with pytest.raises(ckpt.CheckpointError, match="sha256"):
        registry.resolve("mock://bucket/models/m/latest")


@pytest.mark.parametrize("field, value", [("name", "../../../escaped"), ("name", "/tmp/abs"), ("version", "v1/../../x"),
                                          ("files", "../../outside.pt"), ("files", "/etc/passwd")])
def test_a_remote_record_cannot_write_outside_the_cache(tmp_path, monkeypatch, field, value):
    monkeypatch.setenv("MUSICGAN_CACHE_DIR", str(tmp_path / "cache"))
    memory, _ = pafs.FileSystem.from_uri("mock:///")
    monkeypatch.setattr(storage, "filesystem_from_uri", lambda uri: (memory, uri.split("://", 1)[1]))
    run, _ = make_run(tmp_path)
    registry.promote(run, "mock://bucket/models", "m")
    rec = json.loads(memory.open_input_stream("bucket/models/m/v1/model.json").read())
    if field == "files":
        rec["files_sha256"][value] = rec["files_sha256"]["config.json"]
    else:
        rec[field] = value
    with memory.open_output_stream("bucket/models/m/v1/model.json") as f:
        f.write(json.dumps(rec).encode())
    with pytest.raises(ckpt.CheckpointError, match="not a valid model name|not a version like|not a plain relative"):
        registry.resolve("mock://bucket/models/m/v1")
    assert not list((tmp_path / "cache").rglob("*.pt"))
    assert not list(tmp_path.parent.glob("escaped-*")) and not list(Path("/tmp").glob("abs-v1-*"))


def test_half_copied_version_is_never_latest(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    registry.promote(run, str(reg), "m")
    real = pafs.LocalFileSystem

    class DiskFillsUp(real):  # the third file written fails, as a full disk would
        writes = 0

        def open_output_stream(self, path, *a, **k):
            DiskFillsUp.writes += 1
            if DiskFillsUp.writes == 3:
                raise OSError(28, "No space left on device")
            return super().open_output_stream(path, *a, **k)

    monkeypatch.setattr(pafs, "LocalFileSystem", DiskFillsUp)
    with pytest.raises(OSError, match="No space"):
        registry.promote(run, str(reg), "m")
    assert DiskFillsUp.writes == 3
    assert json.loads((reg / "m" / "latest").read_text()) == {"version": "v1"}
    assert sorted(p.name for p in (reg / "m").iterdir()) == [".lock", "latest", "v1"]


@pytest.mark.parametrize("problem, message", [
    ("name", "must be letters"), ("name-newline", "must be letters"), ("pointer", "points at 'v../etc'"),
    ("pointer-newline", "points at 'v1\\n', not a version"), ("missing", "points at v9, which does not exist"),
    ("nothing", "does not exist"),
])
def test_bad_names_and_pointers_are_clear_errors(tmp_path, problem, message):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    registry.promote(run, str(reg), "m")
    with pytest.raises(registry.RegistryError) as info:
        if problem == "name":
            registry.promote(run, str(reg), "../evil")
        elif problem == "name-newline":  # `$` matches before a trailing newline; fullmatch does not
            registry.promote(run, str(reg), "bach\n")
        elif problem == "nothing":
            registry.resolve(str(reg / "nope"))
        else:
            version = {"pointer": "v../etc", "pointer-newline": "v1\n", "missing": "v9"}[problem]
            (reg / "m" / "latest").write_text(json.dumps({"version": version}))
            registry.resolve(str(reg / "m" / "latest"))
    assert message in str(info.value)
    assert sorted(p.name for p in reg.iterdir()) == ["m"]


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def versions(reg, name="m") -> list[str]:
    return sorted((p.name for p in (reg / name).glob("v*")), key=lambda v: int(v[1:]))


def test_a_truncated_weight_file_is_never_promoted(tmp_path):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    truncate(run / "checkpoint_000006" / "generator_ema.pt")  # a copy cut short: every file is there
    with pytest.warns(ckpt.CheckpointWarning, match="checkpoint_000006"):
        assert ckpt.find_latest(run) == run / "checkpoint_000003"
    with pytest.warns(ckpt.CheckpointWarning):
        rec = registry.promote(run, str(reg), "m")  # the newest checkpoint that loads
    assert rec["step"] == 3 and rec["provenance"]["checkpoint"].endswith("checkpoint_000003")
    with pytest.raises(ckpt.CheckpointError, match="generator_ema.pt does not load"):
        registry.promote(run / "checkpoint_000006", str(reg), "m")
    search = tmp_path / "search"  # a search whose best trial's checkpoint is the damaged one
    search.mkdir()
    best = {"trial_id": "t1", "checkpoint": str(run / "checkpoint_000006")}
    (search / "best.json").write_text(json.dumps({"best": best}))
    with pytest.raises(ckpt.CheckpointError, match="generator_ema.pt does not load"):
        registry.promote(search, str(reg), "m")
    truncate(run / "checkpoint_000003" / "optim_d.pt")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint in .* loads"):
        registry.promote(run, str(reg), "m")
    assert versions(reg) == ["v1"] and json.loads((reg / "m" / "latest").read_text()) == {"version": "v1"}
    assert registry.resolve(str(reg / "m"))[1]["step"] == 3


def test_weights_that_do_not_fit_the_config_are_never_promoted(tmp_path):
    run, _ = make_run(tmp_path, steps=(3,))
    c = run / "checkpoint_000003"
    shutil.copy(c / "critic.pt", c / "generator.pt")  # loads, but is not a generator of this architecture
    with pytest.raises(ckpt.CheckpointError, match="generator.pt does not fit"):
        registry.promote(c, str(tmp_path / "models"), "m")
    assert not (tmp_path / "models" / "m" / "v1").exists()


def test_a_tampered_version_is_refused_when_loaded(tmp_path):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    registry.promote(run, str(reg), "m")
    weights = reg / "m" / "v1" / "checkpoint" / "generator_ema.pt"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte, same size
    weights.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="generator_ema.pt has sha256 .* refusing to load"):
        registry.resolve(str(reg / "m" / "latest"))
    with pytest.raises(ckpt.CheckpointError, match="sha256"):  # the folder itself, as `sample --checkpoint` takes it
        ckpt.load_generator(reg / "m" / "v1" / "checkpoint")
    (reg / "m" / "v1" / "checkpoint" / "critic.pt").unlink()
    weights.write_bytes(raw[:100])
    with pytest.raises(ckpt.CheckpointError):
        registry.resolve(str(reg / "m" / "v1"))


def test_racing_promoters_get_distinct_versions_and_latest_ends_on_the_highest(tmp_path):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    n = 6
    start = threading.Barrier(n)

    def one(_):
        start.wait()
        return registry.promote(run, str(reg), "m")["version"]

    with ThreadPoolExecutor(n) as pool:
        got = list(pool.map(one, range(n)))
    assert sorted(got, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, n + 1)]
    assert versions(reg) == [f"v{i}" for i in range(1, n + 1)]
    for v in versions(reg):
        rec = json.loads((reg / "m" / v / "model.json").read_text())
        assert rec["version"] == v
        ckpt.verify_files(reg / "m" / v / "checkpoint", rec["files_sha256"])  # no two promoters' files mixed
    assert json.loads((reg / "m" / "latest").read_text()) == {"version": f"v{n}"}


def test_latest_never_moves_back_when_the_older_promoter_writes_last(tmp_path, monkeypatch):
    """The interleaving that made latest last-writer-wins: v1's promoter is slow to move latest."""
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    real = storage.Location.write_json_atomic
    v2_moved = threading.Event()

    def write(self, obj):
        if posixpath.basename(self.path) == "latest" and obj == {"version": "v1"}:
            v2_moved.wait(timeout=3)  # let v2's promoter move latest first, if it can
        real(self, obj)
        if obj == {"version": "v2"}:
            v2_moved.set()

    monkeypatch.setattr(storage.Location, "write_json_atomic", write)
    start = threading.Barrier(2)

    def one(_):
        start.wait()
        return registry.promote(run, str(reg), "m")

    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(one, range(2)))
    assert sorted(r["version"] for r in records) == ["v1", "v2"]
    assert json.loads((reg / "m" / "latest").read_text()) == {"version": "v2"}
    assert registry.resolve(str(reg / "m" / "latest"))[1]["version"] == "v2"


def test_cli_promote_prints_a_summary(tmp_path):
    run, _ = make_run(tmp_path)
    out = subprocess.run([sys.executable, "-m", "musicgan.cli", "promote", "--model", str(run), "--registry",
                          str(tmp_path / "models"), "--name", "demo"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "promote: demo v1" in out.stdout and "FMD 4.25" in out.stdout
    shutil.rmtree(tmp_path / "run")
    bad = subprocess.run([sys.executable, "-m", "musicgan.cli", "promote", "--model", str(run), "--registry",
                          str(tmp_path / "models"), "--name", "demo"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
