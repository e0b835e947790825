"""Job submission pieces that need no cluster: the token search, entry points, and CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from musicgan.jobs import SubmitError, entrypoint, find_token, runtime_env


def test_token_from_env_then_path_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SubmitError, match="no Ray auth token found.*~/.ray/auth_token"):
        find_token()
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert find_token() == "home-token"
    (tmp_path / "t").write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert find_token() == "path-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert find_token() == "env-token"


def test_entrypoints_are_checked_with_the_real_parser():
    assert entrypoint("train", ["--data", "/s/d", "--run-dir", "/s/r", "--workers", "4"]) == \
        "musicgan train --data /s/d --run-dir /s/r --workers 4"
    assert entrypoint("data", ["--source", "bach", "--out", "/s/my data"]) == \
        "musicgan data build --source bach --out '/s/my data'"
    with pytest.raises(SubmitError, match="unrecognized arguments: --wrokers"):
        entrypoint("train", ["--data", "d", "--run-dir", "r", "--wrokers", "4"])
    with pytest.raises(SubmitError, match="required: --model"):
        entrypoint("serve", [])
    with pytest.raises(SubmitError, match="cannot submit 'evaluate'"):
        entrypoint("evaluate", [])


def test_working_dir_upload_leaves_out_environments_and_outputs(tmp_path):
    env = runtime_env(str(tmp_path))
    assert env["working_dir"] == str(tmp_path) and {".venv", ".git", "runs", "models"} <= set(env["excludes"])
    assert runtime_env(None) == {}
    with pytest.raises(SubmitError, match="not a folder"):
        runtime_env(str(tmp_path / "missing"))


def test_cli_submit_errors_are_one_line_before_any_connection(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MUSICGAN_DEBUG"}
    out = subprocess.run([sys.executable, "-m", "musicgan.cli", "submit", "tune", "--data", "d", "--run-dir", "r",
                          "--trails", "3", "--address", "http://127.0.0.1:9"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error:") and "--trails" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "musicgan.cli", "jobs", "list", "--address", "http://127.0.0.1:9"],
                         capture_output=True, text=True, env={**env, "HOME": str(tmp_path), "RAY_AUTH_TOKEN": "x"},
                         timeout=120)
    assert out.returncode == 2 and "cannot" in out.stderr and "127.0.0.1:9" in out.stderr
    assert "Traceback" not in out.stderr
