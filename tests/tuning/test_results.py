"""Search results: ranking, the CSV/markdown/plot files and the summary, from hand-built rows."""

from __future__ import annotations

import csv
import json
import math

from tuning.results import TrialRow, best_row, markdown, ranked, step_fraction, summary_text, write_all

KEYS = ["optim.lr_g", "loss.critic_steps"]


def rows() -> list[TrialRow]:
    def row(tid, status, steps, fmd, ckpt=True, lr=1e-3, hist=None):
        return TrialRow(tid, status, steps, fmd, min((f for _, f in hist or []), default=math.nan), fmd / 10,
                        0.8, 0.0, {"optim.lr_g": lr, "loss.critic_steps": 2},
                        f"/runs/{tid}/checkpoint_{steps:06d}" if ckpt else None, hist or [])

    return [
        row("a", "completed", 12, 3.0, hist=[(3, 9.0), (6, 5.0), (12, 3.0)]),
        row("b", "stopped", 3, 8.0, hist=[(3, 8.0)]),
        row("c", "completed", 12, 2.5, lr=5e-4, hist=[(3, 7.0), (6, 2.0), (12, 2.5)]),
        row("d", "error", 0, math.nan, ckpt=False),
    ]


def test_ranking_puts_the_lowest_final_fmd_first_and_unreported_last():
    assert [r.trial_id for r in ranked(rows())] == ["c", "a", "b", "d"]
    assert best_row(rows()).trial_id == "c"
    assert best_row([r for r in rows() if r.trial_id == "d"]) is None


def test_step_fraction_counts_trial_steps_used():
    # (12 + 3 + 12 + 0) of 4 x 12
    assert step_fraction(rows(), 12) == 27 / 48
    late = rows()
    late[1].steps_trained = 6  # stopped at the step-3 result, but the run had reached step 6
    assert step_fraction(late, 12) == 30 / 48


def test_files_are_written_sorted_with_hyperparameters(tmp_path):
    best = write_all(rows(), tmp_path, KEYS, 12, manifest_hash="abc")
    assert best.trial_id == "c"
    with (tmp_path / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["trial_id"] for r in table] == ["c", "a", "b", "d"]
    assert table[0]["optim.lr_g"] == "0.0005" and table[0]["best_FMD"] == "2"
    assert table[2]["status"] == "stopped" and table[3]["FMD"] == "-"
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[0].startswith("| rank | trial_id | status |") and "optim.lr_g" in md[0]
    assert md[2].startswith("| 1 | c | completed | 12 | 2.5 |")
    assert (tmp_path / "objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "best.json").read_text())
    assert record["best"]["trial_id"] == "c" and record["best"]["checkpoint"] == "/runs/c/checkpoint_000012"
    assert record["step_fraction"] == 27 / 48 and record["feature_hash"] == "abc"


def test_markdown_and_summary_are_readable():
    md = markdown(rows(), KEYS)
    assert md.count("\n") == 6  # header, rule, 4 trials
    text = summary_text(rows(), __import__("pathlib").Path("/runs/s"), 12)
    assert "4 trials: 2 completed, 1 stopped early, 1 failed; 0.56 of the full trial-steps used" in text
    assert "best         trial c: FMD 2.5 at step 12" in text
    assert len(text.splitlines()) <= 25


def quality_rows() -> list[TrialRow]:
    """A search ranked by the quality objective: the lowest FMD (b) is not the best trial (a)."""
    def row(tid, fmd, quality, crossing, leap):
        return TrialRow(tid, "completed", 12, fmd, fmd, fmd / 10, 0.9, 0.0,
                        {"optim.lr_g": 1e-3, "loss.critic_steps": 2}, f"/runs/{tid}/checkpoint_000012", [(6, quality + 1), (12, quality)], metric="quality",
                        objective=quality, best_objective=quality,
                        measures={"C2ST": 0.9, "gen/crossing": crossing, "real/crossing": 0.008,
                                  "gen/leap_semitones": leap, "real/leap_semitones": 2.59, "targets_missed": 3.0})

    return [row("a", 0.30, 2.0, 0.010, 2.8), row("b", 0.20, 6.5, 0.060, 5.9), row("c", 0.50, 4.0, 0.02, 3.5)]


def test_quality_search_ranks_by_the_objective_and_keeps_fmd_in_the_table(tmp_path):
    rows = quality_rows()
    assert [r.trial_id for r in ranked(rows)] == ["a", "c", "b"]
    assert best_row(rows).trial_id == "a" and best_row(rows, by="FMD").trial_id == "b"
    best = write_all(rows, tmp_path, KEYS, 12)
    assert best.trial_id == "a"
    with (tmp_path / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["trial_id"] for r in table] == ["a", "c", "b"]
    assert table[0]["quality"] == "2" and table[0]["FMD"] == "0.3" and table[2]["FMD"] == "0.2"
    assert table[0]["crossing"] == "0.01" and table[0]["leap"] == "2.8" and table[0]["C2ST"] == "0.9"
    record = json.loads((tmp_path / "best.json").read_text())
    assert record["metric"] == "quality" and record["best"]["trial_id"] == "a"  # what promote copies
    assert record["best_by_FMD"]["trial_id"] == "b" and record["best"]["measures"]["real/crossing"] == 0.008


def test_summary_names_the_trial_fmd_alone_would_promote_and_compares_their_voice_measures():
    text = summary_text(quality_rows(), __import__("pathlib").Path("/runs/s"), 12)
    assert "best         trial a: quality 2 at step 12 (FMD 0.3)" in text
    assert "by FMD alone trial b: FMD 0.2, quality 6.5" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["C2ST", "missed"])
    by_quality, by_fmd, held = (lines[header + k].split() for k in (1, 2, 3))
    assert by_quality[:2] == ["by", "quality"] and by_fmd[:2] == ["by", "FMD"] and held[0] == "held-out"
    col = lines[header].split().index("crossing")
    assert by_quality[2 + col] == "0.01" and by_fmd[2 + col] == "0.06" and held[1 + col] == "0.008"
    same = [r for r in quality_rows() if r.trial_id == "a"]
    assert "by FMD alone the same trial" in summary_text(same, __import__("pathlib").Path("/runs/s"), 12)
