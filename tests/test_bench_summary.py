"""benchmarks/run_all.py (``make bench``): the summary table from each benchmark's last JSON line."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import run_all  # noqa: E402


def test_rows_come_from_the_met_keys_with_median_worst_and_target():
    result = {"benchmark": "x", "step_fraction": 0.427, "step_fraction_worst": 0.512,
              "step_fraction_target": "<= 0.5", "step_fraction_met": True, "regret": 0.03, "regret_met": False,
              "all_met": False, "noise": 0.1}
    assert run_all.rows("tune", result) == [["tune", "step_fraction", "0.427", "0.512", "<= 0.5", "met"],
                                            ["tune", "regret", "0.03", "-", "-", "missed"]]
    assert run_all.rows("broken", None, "exit status 1: boom")[0][-1] == "no result: exit status 1: boom"
    assert run_all.rows("plain", {"a": 1})[0][-1] == "no targets in its JSON"


def test_the_last_json_line_wins_and_noise_is_skipped():
    out = 'start\n{"a": 1}\nprogress {not json\n{"b": 2, "b_met": true}\ntrailing text\n'
    assert run_all.last_json(out) == {"b": 2, "b_met": True}
    assert run_all.last_json("nothing here") is None


def test_an_unknown_benchmark_is_refused_before_anything_runs(capsys, tmp_path):
    assert run_all.main(["--only", "ingest,nope", "--out", str(tmp_path / "s.md")]) == 2
    assert "no benchmark nope" in capsys.readouterr().err and not (tmp_path / "s.md").exists()
    assert all((run_all.HERE / f"{n}.py").is_file() for n in run_all.BENCHMARKS)
