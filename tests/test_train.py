"""Training on Ray Train with 2 workers: outputs, sample/evaluate, resume, and surviving a killed worker."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from musicgan import checkpoint as ckpt
from musicgan.presets import load_preset
from musicgan.train import fit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "MUSICGAN_DEBUG"}
    return subprocess.run([sys.executable, "-m", "musicgan.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def csv_rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_run(bach_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = load_preset("cpu-tiny", ["train.num_workers=2"])
    result = fit(cfg, bach_data.out, str(run))
    assert result.error is None
    return run, cfg


def test_two_worker_run_writes_checkpoints_metrics_and_samples(tiny_run):
    run, cfg = tiny_run
    assert sorted(p.name for p in run.glob("checkpoint_0*")) == ["checkpoint_000003", "checkpoint_000006"]
    for p in run.glob("checkpoint_0*"):
        meta = ckpt.read_meta(p)
        assert meta["data"]["example_shape"] == [4, 64, 48]
    rows = csv_rows(run)
    assert [int(r["step"]) for r in rows] == [3, 6]
    for key in ("FMD", "diversity", "copies", "gen/QN", "real/QN", "FMD_untrained", "d_loss", "g_loss",
                # the voice measures, C2ST and the search objective, at every evaluation
                "gen/leap_semitones", "real/leap_semitones", "gen/pitch_range", "gen/octave_leaps",
                "gen/parallels_per_100", "gen/crossing", "real/crossing", "gen/spacing", "ratio/leap_semitones",
                "vertical_distance", "vertical_distance_floor", "FMD_floor", "C2ST", "C2ST_floor", "quality",
                "targets_missed"):
        assert rows[-1][key] != "", key
    assert 0.0 <= float(rows[-1]["C2ST"]) <= 1.0 and float(rows[-1]["quality"]) > 0  # 6 steps: far from Bach
    assert (run / "samples" / "step_000006" / "pianoroll.png").stat().st_size > 1000
    assert list((run / "samples" / "step_000006").glob("*.mid"))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "losses.png").exists() and (run / "metrics.png").exists()
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["train"]["num_workers"] == 2 and saved["config"]["preset"] == "cpu-tiny"


def test_sample_is_deterministic_per_seed(tiny_run, tmp_path):
    run, _ = tiny_run
    a = cli("sample", "--model", str(run), "--n", "3", "--out", str(tmp_path / "a"), "--seed", "7")
    b = cli("sample", "--model", str(run), "--n", "3", "--out", str(tmp_path / "b"), "--seed", "7")
    c = cli("sample", "--model", str(run), "--n", "3", "--out", str(tmp_path / "c"), "--seed", "8", "--no-wav")
    assert a.returncode == b.returncode == c.returncode == 0, a.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["sample_000.mid", "sample_000.wav", "sample_001.mid", "sample_001.wav", "sample_002.mid",
                     "sample_002.wav", "samples.png"]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert (tmp_path / "a" / "sample_000.mid").read_bytes() != (tmp_path / "c" / "sample_000.mid").read_bytes()
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(tmp_path / "a" / "sample_000.mid"))
    assert [i.name for i in pm.instruments] == ["soprano", "alto", "tenor", "bass"]


def test_evaluate_prints_a_table_and_writes_json(tiny_run, bach_data, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "eval.json"
    r = cli("evaluate", "--model", str(run), "--data", bach_data.out, "--n", "64", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "QN" in r.stdout and "FMD / untrained" in r.stdout
    for label in ("leap", "leaps>8ve", "parallels", "crossing", "spacing", "range", "C2ST accuracy",
                  "vertical intervals", "quality (the search objective"):
        assert label in r.stdout, label
    report = json.loads(out.read_text())
    assert report["step"] == 6
    assert set(report["checks"]) >= {"QN", "UPC", "EB", "TD", "FMD_ratio", "diversity", "copies", "leap_semitones",
                                     "pitch_range", "octave_leaps", "parallels_per_100", "crossing", "spacing",
                                     "vertical_distance", "C2ST"}
    m = report["metrics"]
    assert m["FMD_untrained"] > 0 and m["FMD_floor"] > 0 and m["quality"] > 0
    assert 0.0 <= m["C2ST"]["accuracy"] <= 1.0 and m["C2ST"]["folds"] >= 2  # folds by held-out chorale
    assert report["checks"]["crossing"]["target"] == "<= 2x held-out" and not report["passed"]


def test_evaluate_never_writes_into_the_checkpoint(tiny_run, bach_data):
    run, _ = tiny_run
    checkpoint = run / "checkpoint_000006"
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    r = cli("evaluate", "--model", str(run), "--data", bach_data.out, "--n", "32")
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    report = run / "evaluation-checkpoint_000006.json"  # beside the checkpoint, in the run folder
    assert json.loads(report.read_text())["step"] == 6 and str(report) in r.stdout
    inside = cli("evaluate", "--model", str(run), "--data", bach_data.out, "--n", "32",
                 "--json", str(checkpoint / "eval.json"))
    assert inside.returncode == 2 and "never writes into a checkpoint" in inside.stderr
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before


def test_evaluate_needs_json_for_a_registry_version(tmp_path):
    from musicgan.evaluate import report_path

    version = tmp_path / "models" / "bach" / "v1"
    (version / "checkpoint").mkdir(parents=True)
    (version / "model.json").write_text("{}")
    with pytest.raises(ckpt.CheckpointError, match="registry version, which never changes: give --json"):
        report_path(version / "checkpoint", None)
    assert report_path(version / "checkpoint", str(tmp_path / "r.json")) == tmp_path / "r.json"
    beside = report_path(tmp_path / "run" / "checkpoint_000003", None)
    assert beside == tmp_path / "run" / "evaluation-checkpoint_000003.json"


def test_rerun_resumes_from_the_last_checkpoint(tiny_run, bach_data):
    run, _ = tiny_run
    cfg = load_preset("cpu-tiny", ["train.num_workers=2", "train.total_steps=9"])
    result = fit(cfg, bach_data.out, str(run))
    assert result.error is None
    assert [int(r["step"]) for r in csv_rows(run)] == [3, 6, 9]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["restored"] and events[-1]["step"] == 6


def test_a_restart_never_truncates_the_run_history(tmp_path):
    """Restarting a run at step 0 (no checkpoint yet) or at an earlier checkpoint keeps metrics.csv as it was."""
    from musicgan.train import RunLog

    run = tmp_path / "run"
    run.mkdir()
    history = "step,FMD,d_loss\n2,9.5,0.1\n4,8.0,0.2\n"
    (run / "metrics.csv").write_text(history)
    log = RunLog(run, {}, resume_step=0)
    assert (run / "metrics.part-1.csv").read_text() == history
    assert csv_rows(run) == []
    log.log(2, {"FMD": 7.0})
    log.tb.close()
    assert [(r["step"], r["FMD"]) for r in csv_rows(run)] == [("2", "7.0")]
    assert (run / "metrics.part-1.csv").read_text() == history  # a link to the old file, not the new one
    (run / "metrics.csv").write_text(history)
    RunLog(run, {}, resume_step=2).tb.close()  # resumed from step 2's checkpoint: row 4 is kept in part 2
    assert (run / "metrics.part-2.csv").read_text() == history
    assert [r["step"] for r in csv_rows(run)] == ["2"]
    RunLog(run, {}, resume_step=2).tb.close()  # nothing past the checkpoint: nothing to keep aside
    assert sorted(p.name for p in run.glob("metrics*.csv")) == ["metrics.csv", "metrics.part-1.csv",
                                                                "metrics.part-2.csv"]


def test_dry_run_and_bad_override(bach_data, tmp_path):
    ok = cli("train", "--data", bach_data.out, "--run-dir", str(tmp_path / "r"), "--preset", "cpu-tiny", "--dry-run",
             "--set", "optim.lr_g=0.002")
    assert ok.returncode == 0 and '"lr_g": 0.002' in ok.stdout
    assert not (tmp_path / "r").exists()  # a dry run writes nothing
    bad = cli("train", "--data", bach_data.out, "--run-dir", str(tmp_path / "r"), "--set", "optim.lr=1", "--dry-run")
    assert bad.returncode == 2 and "unknown config key 'optim.lr'" in bad.stderr and "Traceback" not in bad.stderr
    preset = cli("train", "--data", bach_data.out, "--run-dir", str(tmp_path / "r"), "--preset", "huge", "--dry-run")
    assert preset.returncode == 2 and "unknown preset" in preset.stderr


def _train_worker_pids() -> list[int]:
    import psutil

    pids = []
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        if "RayTrainWorker" in text:
            pids.append(p.info["pid"])
    return pids


def test_a_killed_worker_is_replaced_and_the_run_finishes(bach_data, tmp_path):
    run = tmp_path / "faulty"
    total, every = 24, 4
    # the masked (assistant) model: its mask draws and context ride through the same restart machinery
    cfg = load_preset("cpu-masked-tiny", ["train.num_workers=2", f"train.total_steps={total}",
                                   f"train.checkpoint_every_steps={every}", f"train.eval_every_steps={every}",
                                   "train.max_failures=2"])
    killed = {}

    def registered() -> list[str]:
        # a checkpoint counts once Ray has recorded it, not when its directory first appears
        try:
            snap = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
        except (OSError, ValueError):
            return []
        return [c["checkpoint_dir_name"] for c in snap.get("checkpoint_results", [])]

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline and not registered():
            time.sleep(0.2)
        pids = _train_worker_pids()
        if pids:
            os.kill(pids[-1], signal.SIGKILL)
            killed["pid"], killed["after"] = pids[-1], sorted(p.name for p in run.glob("checkpoint_0*"))

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    result = fit(cfg, bach_data.out, str(run))
    t.join(timeout=5)
    assert killed.get("pid"), "the test found a Ray Train worker to kill"
    assert result.error is None
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert len(events) >= 2 and not events[0]["restored"]
    assert events[-1]["restored"] and events[-1]["step"] >= every, events
    # finished at the target; every checkpoint that remains is complete and loadable
    latest = ckpt.find_latest(run)
    assert ckpt.read_meta(latest)["step"] == total
    for p in run.glob("checkpoint_0*"):
        ckpt.read_meta(p)
        ckpt.load_generator(p)
    g = ckpt.load_generator(latest)[0]
    assert g.masked
    from musicgan.assist.fill import fill, line_roll
    import numpy as np
    line = np.arange(64) % 20 + 20
    known = np.zeros((4, 64), bool)
    known[0] = True
    out = fill(g, line_roll(line, 4, 0, 48), known, n=2, seed=1)
    assert (out[:, 0].argmax(-1) == line).all()
    # every evaluation step is reported exactly once: nothing duplicated, nothing missing
    steps = [int(r["step"]) for r in csv_rows(run)]
    assert steps == list(range(every, total + 1, every))
