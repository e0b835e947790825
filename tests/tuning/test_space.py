"""Search-space files: valid ones become Tune samplers; bad ones fail before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from musicgan.config import Config
from musicgan.presets import load_preset
from tuning.space import SpaceError, apply_params, load_space

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


def test_shipped_spaces_load_against_every_preset():
    for name in ("default", "learning-rates"):
        for preset in ("cpu-tiny", "cpu", "gpu"):
            params = load_space(ROOT / "tuning" / "spaces" / f"{name}.yaml", load_preset(preset))
            assert params and all(p.key.count(".") == 1 for p in params)
    for preset in ("audio-tiny", "audio-cpu", "audio-gpu"):
        params = load_space(ROOT / "tuning" / "spaces" / "audio.yaml", load_preset(preset))
        assert {"loss.aux_weight", "optim.lr_g"} <= {p.key for p in params}


def test_samplers_become_tune_domains_that_sample_in_range(tmp_path):
    params = load_space(write(tmp_path, """
optim.lr_g: {loguniform: [1.0e-4, 1.0e-2]}
loss.gp_weight: {uniform: [1, 20]}
loss.critic_steps: {choice: [1, 3]}
model.channels: {randint: [16, 33]}
"""))
    by_key = {p.key: p.to_tune() for p in params}
    for _ in range(50):
        assert 1e-4 <= by_key["optim.lr_g"].sample() <= 1e-2
        assert 1 <= by_key["loss.gp_weight"].sample() <= 20
        assert by_key["loss.critic_steps"].sample() in (1, 3)
        assert 16 <= by_key["model.channels"].sample() < 33
    cfg = apply_params(Config(), {"optim.lr_g": 5e-4, "model.channels": 24.0, "loss.critic_steps": 3})
    assert cfg.optim.lr_g == 5e-4 and cfg.model.channels == 24 and type(cfg.model.channels) is int
    assert Config().model.channels == 128  # the base is not modified


@pytest.mark.parametrize("text, message", [
    ("optim.lr: {loguniform: [1.0e-4, 1.0e-2]}", "optim.lr: not a config key"),
    ("optim: {choice: [1, 2]}", "names a config section"),
    ("optim.lr_g: {normal: [0, 1]}", "unknown sampler 'normal'"),
    ("optim.lr_g: {loguniform: [0, 1.0e-2]}", "loguniform needs low > 0"),
    ("optim.lr_g: {uniform: [0.1, 0.01]}", "needs low < high"),
    ("model.channels: {uniform: [16, 64]}", "is an int; use randint or choice"),
    ("loss.kind: {choice: [wgan-gp, 3]}", "choice value 3 (int) does not match"),
    ("loss.kind: {choice: [wgan-gp, lsgan]}", "loss.kind='lsgan' makes an invalid config"),
    ("loss.critic_steps: {randint: [0, 3]}", "loss.critic_steps=0 makes an invalid config"),
    ("train.num_workers: {choice: [1, 2]}", "is fixed for a whole search"),
    ("optim.lr_g: 0.001", "expected one sampler"),
    ("- optim.lr_g", "must map config keys to samplers"),
    ("optim.lr_g: {loguniform: [1.0e-4, 1.0e-2]", "is not valid YAML"),
])
def test_bad_space_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(SpaceError) as info:
        load_space(write(tmp_path, text))
    assert message in str(info.value), str(info.value)
    assert "space.yaml" in str(info.value)


def test_missing_space_file_is_an_error(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_space_before_starting_ray(tmp_path, bach_data):
    space = write(tmp_path, "optim.lr_gen: {loguniform: [1.0e-4, 1.0e-2]}\n")
    out = subprocess.run([sys.executable, "-m", "musicgan.cli", "tune", "--data", bach_data.out, "--space", str(space),
                          "--run-dir", str(tmp_path / "run"), "--trials", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "error:" in out.stderr and "optim.lr_gen: not a config key" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()  # nothing started, nothing written
