"""The ``musicgan`` command itself: user errors (one line, exit 2, what to run), --version, --help,
--dry-run. Most run the installed ``musicgan`` script as a subprocess, as a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicgan import cli

MUSICGAN = str(Path(sys.executable).with_name("musicgan"))


def run(*args, cwd=None, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "MUSICGAN_DEBUG"}
    env.update(env_extra or {})
    t0 = time.perf_counter()
    out = subprocess.run([MUSICGAN, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    out.seconds = time.perf_counter() - t0
    return out


def fake_build(folder: Path, kind: str = "pianoroll", train_examples: int = 200) -> str:
    """A folder holding only the manifest fields the CLI's checks read (no shards)."""
    folder.mkdir(parents=True)
    manifest = {"format": "musicgan-shards/1", "kind": kind, "feature_hash": "f" * 16,
                "counts": {"train_examples": train_examples, "val_examples": 20}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder)


# (arguments, text the one-line error must hold: what to run to fix it)
ERRORS = {
    "missing data": (["train", "--data", "{tmp}/nope", "--run-dir", "{tmp}/r"], "musicgan data build"),
    "data without manifest": (["train", "--data", "{tmp}", "--run-dir", "{tmp}/r"], "musicgan data build"),
    "missing checkpoint": (["sample", "--model", "{tmp}/nope", "--out", "{tmp}/s"], "musicgan train"),
    "run without checkpoint": (["evaluate", "--model", "{tmp}", "--data", "{tmp}"], "musicgan train"),
    "missing model": (["serve", "--model", "{tmp}/models/bach/latest"], "musicgan promote --model RUN --registry"),
    "missing registry model": (["sample", "--model", "{tmp}/models/bach/v3", "--out", "{tmp}/s"],
                               "--registry {tmp}/models --name bach"),
    "missing promote source": (["promote", "--model", "{tmp}/nope", "--name", "x"], "musicgan train"),
    "unknown preset": (["train", "--data", "d", "--run-dir", "r", "--preset", "huge"], "unknown preset 'huge'"),
    "bad --set key": (["train", "--data", "{tmp}/nope", "--run-dir", "r", "--set", "optim.lr=1"],
                      "unknown config key 'optim.lr'"),
    "unknown source": (["data", "build", "--source", "bahc", "--out", "{tmp}/o"], "bach, folk, palestrina, monteverdi, quartets, styles, bach-audio, notes"),
    "tune on missing data": (["tune", "--data", "{tmp}/nope", "--run-dir", "{tmp}/s"], "musicgan data build"),
    "jobs status without id": (["jobs", "status", "--address", "http://127.0.0.1:9"], "musicgan jobs list"),
    "jobs status with a bad id": (["jobs", "status", "../x", "--address", "http://127.0.0.1:9"], "not a Ray job id"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_are_one_fast_line_with_exit_2_and_what_to_run(case, tmp_path):
    args, hint = ERRORS[case]
    out = run(*[a.format(tmp=tmp_path) for a in args], cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and hint.format(tmp=tmp_path) in lines[0], out.stderr
    assert out.stdout == ""
    # measured at 0.05-0.1 s of CPU (0.2-1 s wall on the loaded two-core machine); before: 1.5-20 s
    assert out.seconds < 5, out.seconds


@pytest.mark.parametrize("case", ["missing data", "missing checkpoint", "missing model", "bad --set key",
                                  "unknown source", "jobs status without id"])
def test_user_error_paths_import_no_torch_ray_or_pyarrow(case, tmp_path):
    args = [a.format(tmp=tmp_path) for a in ERRORS[case][0]]
    code = ("import sys; from musicgan.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, sorted(m for m in ('torch', 'ray', 'pyarrow', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "MUSICGAN_DEBUG"})
    assert out.stdout.split() == ["2", "[]"], out.stdout + out.stderr


def test_existing_error_types_are_user_errors():
    from musicgan.audio_model import ConditionError
    from musicgan.checkpoint import CheckpointError
    from musicgan.config import ConfigError
    from musicgan.data.build import BuildError
    from musicgan.data.shards import DataError
    from musicgan.errors import UserError
    from musicgan.jobs import SubmitError
    from musicgan.registry import RegistryError

    for error in (ConfigError, BuildError, DataError, CheckpointError, RegistryError, ConditionError, SubmitError):
        assert issubclass(error, UserError), error
    assert issubclass(ConfigError, ValueError)  # callers that catch ValueError still do


def test_errors_module_imports_only_the_standard_library():
    code = "import sys; import musicgan.errors; print(sorted(m for m in sys.modules if m.startswith('musicgan')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['musicgan', 'musicgan.errors']", out.stdout + out.stderr


def test_light_constants_match_the_modules_they_mirror():
    from musicgan.data import build, shards

    assert cli.SOURCES == build.EMBEDDED
    assert (cli.MANIFEST, cli.SHARDS_FORMAT) == (shards.MANIFEST, shards.FORMAT)


def test_version():
    from importlib import metadata

    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"musicgan {metadata.version('musicgan')}"


def all_commands(parser=None, prefix=()):
    """(command words, its parser) for every command and subcommand."""
    import argparse

    parser = parser or cli.make_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from all_commands(sub, (*prefix, name))


def test_every_command_has_a_description_and_an_example():
    commands = dict(all_commands())
    assert {"data", "data build", "train", "sample", "evaluate", "tune", "promote", "serve", "submit", "jobs",
            "demo", "harmonize", "continue", "inpaint"} <= {" ".join(c) for c in commands}
    for words, parser in commands.items():
        help_text = parser.format_help()
        assert parser.description, words
        assert f"example:  musicgan {' '.join(words)}" in help_text, words


def test_preset_choices_are_the_presets():
    from musicgan.presets import PRESETS

    commands = {" ".join(c): p for c, p in all_commands()}
    for name in ("train", "tune", "demo"):
        [preset] = [a for a in commands[name]._actions if a.dest == "preset"]
        assert preset.choices == list(PRESETS), name


def test_dry_run_prints_the_config_and_writes_nothing(tmp_path):
    data = fake_build(tmp_path / "data")
    out = run("train", "--data", data, "--run-dir", tmp_path / "runs" / "a", "--preset", "cpu-tiny", "--dry-run",
              "--set", "optim.lr_g=0.002")
    assert out.returncode == 0, out.stderr
    assert '"lr_g": 0.002' in out.stdout and "Nothing was written" in out.stdout
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "manifest.json"]


@pytest.mark.parametrize("preset, kind, expected", [
    ("audio-tiny", "pianoroll", "needs mel; use a pianoroll preset"),
    ("cpu-tiny", "mel", "needs pianoroll; use --preset audio-cpu"),
])
def test_dry_run_refuses_a_preset_of_the_other_family(tmp_path, preset, kind, expected):
    data = fake_build(tmp_path / "data", kind=kind)
    out = run("train", "--data", data, "--run-dir", tmp_path / "r", "--preset", preset, "--dry-run")
    assert out.returncode == 2 and expected in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert not (tmp_path / "r").exists()


def test_dry_run_makes_the_real_runs_checks(tmp_path):
    small = fake_build(tmp_path / "small", train_examples=10)
    out = run("train", "--data", small, "--run-dir", tmp_path / "r", "--preset", "cpu-tiny", "--dry-run")
    assert out.returncode == 2 and "too few for 1 workers x batch 16" in out.stderr
    data = fake_build(tmp_path / "data")
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"data": {"feature_hash": "0" * 16}, "config": {}}))
    out = run("train", "--data", data, "--run-dir", run_dir, "--preset", "cpu-tiny", "--dry-run")
    assert out.returncode == 2 and "use another --run-dir" in out.stderr
    bad = run("train", "--data", data, "--run-dir", tmp_path / "r", "--set", "train.num_workers=0", "--dry-run")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


@pytest.mark.ray
def test_dry_run_on_a_real_build(bach_data, tmp_path):
    ok = run("train", "--data", bach_data.out, "--run-dir", tmp_path / "r", "--preset", "cpu-tiny", "--dry-run")
    assert ok.returncode == 0 and "dry run: checks passed" in ok.stdout, ok.stderr
    audio = run("train", "--data", bach_data.out, "--run-dir", tmp_path / "r", "--preset", "audio-tiny", "--dry-run")
    assert audio.returncode == 2 and "holds pianoroll features" in audio.stderr
    assert not (tmp_path / "r").exists()


def test_submit_data_and_submit_data_build_send_the_same_command(monkeypatch):
    import musicgan.jobs

    sent = []
    monkeypatch.setattr(musicgan.jobs, "submit", lambda kind, rest, *a, **k: sent.append(
        musicgan.jobs.entrypoint(kind, rest)) or 0)
    for words in (["data"], ["data", "build"]):
        assert cli.main(["submit", *words, "--source", "bach", "--out", "/s/d", "--address", "http://h:8265"]) == 0
    assert sent == ["musicgan data build --source bach --out /s/d"] * 2


def test_model_names_a_run_a_checkpoint_or_a_registry_version_and_old_names_still_work(tmp_path, capsys):
    from tests.test_registry import make_run

    run_dir, _ = make_run(tmp_path)
    reg = tmp_path / "models"
    assert cli.main(["promote", "--model", str(run_dir), "--registry", str(reg), "--name", "m"]) == 0
    assert cli.main(["promote", "--from", str(run_dir / "checkpoint_000003"), "--registry", str(reg),
                     "--name", "m"]) == 0
    err = capsys.readouterr().err
    assert err == "note: --from is deprecated and goes in the next release; use --model\n"
    # latest is v2, the copy of checkpoint_000003
    refs = {reg / "m" / "latest": 3, reg / "m" / "v1": 6, run_dir: 6, run_dir / "checkpoint_000003": 3}
    for i, (ref, step) in enumerate(refs.items()):
        assert cli.main(["sample", "--model", str(ref), "--n", "2", "--out", str(tmp_path / f"s{i}"), "--no-wav"]) == 0
        assert f"(step {step}, seed 0)" in capsys.readouterr().out
        assert len(list((tmp_path / f"s{i}").glob("*.mid"))) == 2
    assert cli.main(["sample", "--checkpoint", str(run_dir), "--n", "1", "--out", str(tmp_path / "old")]) == 0
    assert "--checkpoint is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sample", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "required: --model" in capsys.readouterr().err


def test_train_seed_sets_train_seed(tmp_path):
    data = fake_build(tmp_path / "data")
    out = run("train", "--data", data, "--run-dir", tmp_path / "r", "--seed", "7", "--dry-run")
    assert out.returncode == 0 and '"seed": 7' in out.stdout, out.stderr
