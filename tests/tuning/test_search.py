"""A real Ray Tune search over tiny GANs: ASHA stops a trial, the best is promoted and loads; resume works."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicgan import checkpoint as ckpt
from musicgan import registry
from musicgan.gan import generate
from tuning.search import SearchSpec, run_search

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Two choices far apart at ASHA's first rung (step 3 of cpu-tiny, by the quality objective: about
# 29 for binary output, 50 for monophonic), and one trial at a time, so that the results reach each
# rung in trial order: trial 1 (monophonic with this seed) meets trial 0's better result there and is
# stopped. With two at a time the order of arrival decided, and all four trials sometimes completed.
SPACE = """
model.output: {choice: [monophonic, binary]}
optim.lr_g: {loguniform: [5.0e-4, 2.0e-3]}
"""


@pytest.fixture(scope="module")
def search(bach_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    (root / "space.yaml").write_text(SPACE)
    spec = SearchSpec(data_dir=bach_data.out, space=str(root / "space.yaml"), run_dir=str(root / "run"), trials=4,
                      scheduler="asha", preset="cpu-tiny", overrides=["train.total_steps=12"], seed=3,
                      max_concurrent=1)
    rows, best = run_search(spec, progress=False)
    return root / "run", rows, best


def test_asha_stops_at_least_one_trial_early(search):
    run, rows, best = search
    assert len(rows) == 4 and not [r.error for r in rows if r.error]
    stopped = [r for r in rows if r.status == "stopped"]
    completed = [r for r in rows if r.status == "completed"]
    assert stopped and completed, [(r.trial_id, r.status, r.steps, r.params) for r in rows]
    for r in stopped:
        assert r.steps < 12
        trial = run / "trials" / r.trial_id
        assert not (trial / "checkpoint_000012").exists()
        # the stop reaches the run a little after the result that caused it: counted as cost (the
        # loop records the step it stopped at, which metrics.csv, written at evaluations, does not see)
        steps = [int(row["step"]) for row in csv.DictReader((trial / "metrics.csv").open())]
        assert r.steps <= max(steps) <= r.steps_trained < 12
        # ASHA stopped it because another trial had done better at the same rung, by the objective
        others = [f for o in rows if o is not r for s, f in o.history if s == r.steps]
        assert others and r.objective > min(others)
    for r in completed:
        assert r.steps == r.steps_trained == 12 and [s for s, _ in r.history] == [3, 6, 9, 12]


def test_results_are_sorted_and_best_is_the_lowest_objective(search):
    run, rows, best = search
    table = list(csv.DictReader((run / "results.csv").open()))
    quality = [float(r["quality"]) for r in table]  # the default objective of a pianoroll search
    assert quality == sorted(quality) and table[0]["trial_id"] == best.trial_id
    assert best.metric == "quality" and best.objective == min(r.objective for r in rows)
    assert all(r["FMD"] not in ("", "-") for r in table)  # FMD stays in the table
    assert {"optim.lr_g", "model.output", "status", "steps", "C2ST", "leap", "crossing", "parallels"} <= set(table[0])
    by_fmd = json.loads((run / "best.json").read_text())["best_by_FMD"]
    assert by_fmd["fmd"] == min(r.fmd for r in rows)
    assert (run / "objective.png").stat().st_size > 5000
    assert (run / "results.md").read_text().count("\n") == 6
    assert json.loads((run / "best.json").read_text())["best"]["trial_id"] == best.trial_id


def test_best_checkpoint_is_promoted_and_loads(search, tmp_path):
    run, rows, best = search
    record = registry.promote(run, str(tmp_path / "models"), "bach-tiny")
    assert record["version"] == "v1" and record["provenance"]["trial_id"] == best.trial_id
    assert record["provenance"]["search_run"] == str(run) and record["metrics"]["FMD"] == pytest.approx(best.fmd)
    assert record["metrics"]["quality"] == pytest.approx(best.objective)  # promoted by the objective
    assert record["provenance"]["objective"] == {"quality": pytest.approx(best.objective),
                                                 "FMD": pytest.approx(best.fmd)}
    assert record["config"]["optim"]["lr_g"] == pytest.approx(best.params["optim.lr_g"])
    path, rec = registry.resolve(str(tmp_path / "models" / "bach-tiny" / "latest"))
    g, cfg, data, meta = ckpt.load_generator(path)
    # the best may be a trial ASHA stopped (GAN FMD is not monotonic): the promoted weights are its last
    assert meta["step"] == best.steps == int(Path(best.checkpoint).name.split("_")[1]) and rec["version"] == "v1"
    rolls = generate(g, 3, seed=0)
    assert tuple(rolls.shape) == (3, *data["example_shape"])


def tune_cmd(data: str, space: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "tuning.search", "--data", data, "--space", str(space), "--run-dir", str(run),
            "--trials", "2", "--max-concurrent", "1", "--scheduler", "none", "--preset", "cpu-tiny",
            "--set", "train.total_steps=9", "--quiet"]


def registered_steps(trial: Path) -> list[int]:
    snap = trial / "checkpoint_manager_snapshot.json"
    if not snap.exists():
        return []
    try:
        names = [c["checkpoint_dir_name"] for c in json.loads(snap.read_text()).get("checkpoint_results", [])]
    except (ValueError, KeyError):
        return []
    return [int(n.split("_")[1]) for n in names]


def test_killed_search_resumes_without_rerunning_finished_trials(bach_data, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr_g: {loguniform: [5.0e-4, 2.0e-3]}\n")
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("MUSICGAN_DEBUG", "RAY_ADDRESS")}
    proc = subprocess.Popen(tune_cmd(bach_data.out, space, run), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill the whole search (driver, its Ray, the trials) once one trial finished and the next has
    # a registered checkpoint: mid-trial.
    deadline = time.time() + 400
    finished = second = None
    while time.time() < deadline and proc.poll() is None:
        trials = sorted((run / "trials").glob("*")) if (run / "trials").exists() else []
        finished = next((t for t in trials if 9 in registered_steps(t)), None)
        second = next((t for t in trials if t != finished and registered_steps(t)), None)
        if finished and second:
            break
        time.sleep(0.5)
    assert finished and second and proc.poll() is None, "the search ended or stalled before the kill point"
    os.killpg(proc.pid, signal.SIGKILL)  # its local Ray (GCS, raylet, workers) is in the same process group
    proc.wait()
    assert 9 not in registered_steps(second)

    again = subprocess.run(tune_cmd(bach_data.out, space, run), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming the search" in again.stdout
    assert "2 trials: 2 completed" in again.stdout
    starts = lambda t: [json.loads(line) for line in (t / "events.jsonl").read_text().splitlines()]  # noqa: E731
    assert len(starts(finished)) == 1  # finished trial: not run again
    resumed = starts(second)
    assert len(resumed) == 2 and resumed[1]["restored"] and resumed[1]["step"] >= 3
    assert registered_steps(second)[-1] == 9
    table = list(csv.DictReader((run / "results.csv").open()))
    assert sorted(r["trial_id"] for r in table) == sorted([finished.name, second.name])


def test_the_objective_is_quality_for_pianoroll_fmd_for_audio_and_fmd_on_request(tmp_path):
    from musicgan.config import ConfigError
    from musicgan.presets import load_preset
    from tuning.search import _check_same_search, objective_metric

    spec = SearchSpec(data_dir=str(tmp_path), space="s.yaml", run_dir=str(tmp_path))
    assert objective_metric(spec, load_preset("cpu-tiny")) == "quality"
    assert objective_metric(spec, load_preset("audio-tiny")) == "FMD"
    spec.objective = "FMD"
    assert objective_metric(spec, load_preset("cpu-tiny")) == "FMD"
    spec.objective = "quality"
    with pytest.raises(ConfigError, match="voice measures.*--objective FMD"):
        objective_metric(spec, load_preset("audio-tiny"))
    # a search saved before the objective could be chosen ranked by FMD: resuming it by quality is refused
    spec.objective = "auto"
    record = {k: v for k, v in vars(spec).items() if k != "objective"}
    (tmp_path / "search.json").write_text(json.dumps(record | {"data_dir": str(tmp_path.resolve()), "space_text": ""}))
    with pytest.raises(ConfigError, match=r"other settings \(objective\)"):
        _check_same_search(tmp_path, spec, "")
    spec.objective = "FMD"
    _check_same_search(tmp_path, spec, "")
