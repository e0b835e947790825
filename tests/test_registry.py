"""The model registry: promote into vN atomically, move latest, resolve and load; local and URI roots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

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
    assert sorted(p.name for p in (reg / "bach").iterdir()) == ["latest", "v1", "v2"]  # no temporaries left

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


def test_half_copied_version_is_never_latest(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    registry.promote(run, str(reg), "m")

    def broken_copy(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pafs, "copy_files", broken_copy)
    with pytest.raises(OSError):
        registry.promote(run, str(reg), "m")
    assert json.loads((reg / "m" / "latest").read_text()) == {"version": "v1"}
    assert sorted(p.name for p in (reg / "m").iterdir()) == ["latest", "v1"]


@pytest.mark.parametrize("problem, message", [
    ("name", "must be letters"), ("pointer", "points at 'v../etc'"), ("missing", "points at v9, which does not exist"),
    ("nothing", "does not exist"),
])
def test_bad_names_and_pointers_are_clear_errors(tmp_path, problem, message):
    run, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    registry.promote(run, str(reg), "m")
    with pytest.raises(registry.RegistryError) as info:
        if problem == "name":
            registry.promote(run, str(reg), "../evil")
        elif problem == "nothing":
            registry.resolve(str(reg / "nope"))
        else:
            (reg / "m" / "latest").write_text(json.dumps({"version": "v../etc" if problem == "pointer" else "v9"}))
            registry.resolve(str(reg / "m" / "latest"))
    assert message in str(info.value)


def test_cli_promote_prints_a_summary(tmp_path):
    run, _ = make_run(tmp_path)
    out = subprocess.run([sys.executable, "-m", "musicgan.cli", "promote", "--from", str(run), "--registry",
                          str(tmp_path / "models"), "--name", "demo"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "promote: demo v1" in out.stdout and "FMD 4.25" in out.stdout
    shutil.rmtree(tmp_path / "run")
    bad = subprocess.run([sys.executable, "-m", "musicgan.cli", "promote", "--from", str(run), "--registry",
                          str(tmp_path / "models"), "--name", "demo"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
