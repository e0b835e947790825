"""A search's results in forms people read: a CSV, a sorted markdown table, a plot and a summary.

Trials are ranked by the search's objective (``quality`` by default for pianoroll models, see
:mod:`musicgan.evaluate`; ``FMD`` when asked, and for audio models). FMD stays in every table, and
the summary and best.json also name the trial FMD alone would have promoted, with both trials'
voice measures, so the two objectives can be compared.

Pure functions of :class:`TrialRow` lists, so they are tested on hand-built rows without Ray.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicgan.storage import resolve

COLUMNS = ("rank", "trial_id", "status", "steps", "FMD", "best_FMD", "FMD_ratio", "diversity", "copies")
# The quality measures of a trial's last evaluation (musicgan.train.Evaluator's keys) -> column names.
MEASURES = {"C2ST": "C2ST", "targets_missed": "missed", "gen/leap_semitones": "leap", "gen/pitch_range": "range",
            "gen/octave_leaps": "octave_leaps", "gen/parallels_per_100": "parallels", "gen/crossing": "crossing",
            "gen/spacing": "spacing", "vertical_distance": "vertical"}
HELD_OUT = tuple(f"real/{k.split('/', 1)[1]}" for k in MEASURES if k.startswith("gen/"))


@dataclass
class TrialRow:
    trial_id: str
    status: str
    """``completed`` (ran every step), ``stopped`` (by the scheduler, early) or ``error``."""
    steps: int
    fmd: float
    """FMD at the trial's last report (lower is better); NaN if it never reported."""
    best_fmd: float
    fmd_ratio: float
    diversity: float
    copies: float
    params: dict
    checkpoint: str | None
    history: list[tuple[int, float]] = field(default_factory=list)
    """(step, objective) at every report."""
    error: str = ""
    steps_trained: int = -1
    """Steps the Train run actually ran: a stop reaches a running trial a little after the result that
    caused it, so a stopped trial may train past ``steps``. Counted for the cost (``step_fraction``)."""
    pitch_accuracy: float = math.nan
    """Audio models: the share of generated clips at the pitch asked for (see musicgan/audio_metrics.py)."""
    stop_step: int = -1
    """The step of the result at which the scheduler stopped the trial (tuning/search.py's stop.json);
    -1 if it was not stopped."""
    stop_time: float = math.nan
    """When the scheduler decided (seconds since the epoch, the driver's clock)."""
    trained_time: float = math.nan
    """When the Train run stopped at the search's stop file (its ``stopped`` event); NaN if unknown."""
    metric: str = "FMD"
    """The search's objective: ``FMD`` or ``quality`` (musicgan.evaluate.quality_objective)."""
    objective: float = math.nan
    """``metric`` at the trial's last report (lower is better); NaN if it never reported. FMD: ``fmd``."""
    best_objective: float = math.nan
    measures: dict = field(default_factory=dict)
    """The last report's quality measures (:data:`MEASURES` and the held-out values, :data:`HELD_OUT`)."""

    def __post_init__(self):
        if self.steps_trained < 0:
            self.steps_trained = self.steps
        if self.metric == "FMD":
            self.objective = self.fmd if math.isnan(self.objective) else self.objective
            self.best_objective = self.best_fmd if math.isnan(self.best_objective) else self.best_objective


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _trained_steps(trial_dir: Path) -> int:
    """The last step a Train run trained (every part of a PBT trial counted), 0 if none."""
    return _train_end(trial_dir)[0]


def _train_end(trial_dir: Path) -> tuple[int, float]:
    """(step, time) of the last sign of training: a ``stopped`` event in events.jsonl (the loop saw
    the search's stop file: exact, with its time) or the last metrics.csv row (an evaluation; time
    NaN). Without the event, steps trained after the last evaluation are not seen."""
    last, when = 0, math.nan
    for run in [trial_dir, *sorted(trial_dir.glob("part_*"))]:
        if (run / "metrics.csv").exists():
            with (run / "metrics.csv").open() as f:
                steps = [int(r["step"]) for r in csv.DictReader(f)]
            if steps and max(steps) > last:
                last, when = max(steps), math.nan
        if (run / "events.jsonl").exists():
            for line in (run / "events.jsonl").read_text().splitlines():
                e = json.loads(line)
                if e.get("event") == "stopped" and e["step"] >= last:
                    last, when = int(e["step"]), float(e["time"])
    return last, when


def _stop_decision(trial_dir: Path) -> tuple[int, float]:
    """(step, time) at which the scheduler stopped the trial, from its stop.json; (-1, NaN) if none."""
    path = trial_dir / "stop.json"
    if not path.exists():
        return -1, math.nan
    d = json.loads(path.read_text())
    return int(d["step"]), float(d["time"])


def stop_waste(rows: list[TrialRow]) -> list[dict]:
    """Per trial that the scheduler stopped: the step it was stopped at, the step its Train run
    really stopped at, the steps between (trained for nothing) and the seconds between (NaN when
    the run did not record its stop: ended with its actor, or a Train loop without stop files)."""
    return [{"trial_id": r.trial_id, "decided_step": r.stop_step, "stopped_step": r.steps_trained,
             "wasted_steps": r.steps_trained - r.stop_step, "seconds": r.trained_time - r.stop_time}
            for r in rows if r.stop_step >= 0]


def _trial_id(path: str) -> str | None:
    """From the trial folder's name (``run_trial_80859_00002_2_...``). Not from the last result:
    after a PBT exploit that result is a copy of the cloned trial's, trial_id included."""
    m = re.search(r"_([0-9a-f]{5}_\d{5})(?:_|$)", Path(path).name)
    return m.group(1) if m else None


def _history(df, key: str) -> list[tuple[int, float]]:
    if df is None or key not in df or "step" not in df:
        return []
    return [(int(s), float(f)) for s, f in zip(df["step"], df[key]) if not math.isnan(_num(f))]


def rows_from_grid(grid, keys: list[str], total_steps: int, trials_dir: Path | None = None,
                   metric: str = "FMD") -> list[TrialRow]:
    """One row per trial of a Tune ``ResultGrid``, ranked by ``metric``."""
    rows = []
    for r in grid:
        m = r.metrics or {}
        df = r.metrics_dataframe
        history, fmd_history = _history(df, metric), _history(df, "FMD")
        steps = int(m.get("step") or (history[-1][0] if history else 0))
        status = "error" if r.error else ("completed" if steps >= total_steps else "stopped")
        rows.append(TrialRow(
            trial_id=_trial_id(r.path) or str(m.get("trial_id")), status=status, steps=steps,
            fmd=_num(m.get("FMD")), best_fmd=min((f for _, f in fmd_history), default=math.nan),
            fmd_ratio=_num(m.get("FMD_ratio")), diversity=_num(m.get("diversity")), copies=_num(m.get("copies")),
            params={k: (r.config or {}).get(k) for k in keys}, checkpoint=m.get("checkpoint_path"),
            history=history, error=str(r.error).splitlines()[0] if r.error else "",
            pitch_accuracy=_num(m.get("pitch_accuracy")), metric=metric, objective=_num(m.get(metric)),
            best_objective=min((f for _, f in history), default=math.nan),
            measures={k: _num(m[k]) for k in (*MEASURES, *HELD_OUT) if k in m},
        ))
        if trials_dir is not None:
            trial_dir = Path(trials_dir) / rows[-1].trial_id
            trained, rows[-1].trained_time = _train_end(trial_dir)
            rows[-1].steps_trained = max(steps, trained)
            rows[-1].stop_step, rows[-1].stop_time = _stop_decision(trial_dir)
    return rows


def _score(r: TrialRow, by: str | None) -> float:
    return r.fmd if by == "FMD" else r.objective


def ranked(rows: list[TrialRow], by: str | None = None) -> list[TrialRow]:
    """Best first: lowest final objective (``by="FMD"``: lowest final FMD); trials without one last."""
    def key(r):
        v = _score(r, by)
        return (math.isnan(v), v if not math.isnan(v) else 0.0, r.trial_id)

    return sorted(rows, key=key)


def best_row(rows: list[TrialRow], by: str | None = None) -> TrialRow | None:
    """The trial to promote: the best by the objective (or ``by="FMD"``) that has a checkpoint."""
    usable = [r for r in ranked(rows, by) if r.checkpoint and not math.isnan(_score(r, by)) and r.status != "error"]
    return usable[0] if usable else None


def _metric(rows: list[TrialRow]) -> str:
    return rows[0].metric if rows else "FMD"


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


def _table(rows: list[TrialRow], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    audio = any(not math.isnan(r.pitch_accuracy) for r in rows)  # a search over the spectrogram GAN
    metric = _metric(rows)
    objective = [] if metric == "FMD" else [metric, f"best_{metric}"]
    measures = [k for k in MEASURES if any(k in r.measures for r in rows)]
    header = (list(COLUMNS[:4]) + objective + list(COLUMNS[4:]) + [MEASURES[k] for k in measures]
              + (["pitch_accuracy"] if audio else []) + keys)
    body = []
    for i, r in enumerate(ranked(rows), 1):
        body.append([str(i), r.trial_id, r.status, str(r.steps)]
                    + ([_fmt(r.objective), _fmt(r.best_objective)] if objective else [])
                    + [_fmt(r.fmd), _fmt(r.best_fmd), _fmt(r.fmd_ratio), _fmt(r.diversity), _fmt(r.copies)]
                    + [_fmt(r.measures.get(k, math.nan)) for k in measures]
                    + ([_fmt(r.pitch_accuracy)] if audio else []) + [_fmt(r.params.get(k)) for k in keys])
    return header, body


def write_csv(rows: list[TrialRow], path: Path, keys: list[str]) -> None:
    header, body = _table(rows, keys)
    by_id = {r.trial_id: r for r in rows}
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(header + ["checkpoint", "error"])
    for line in body:
        r = by_id[line[1]]
        w.writerow(line + [r.checkpoint or "", r.error])
    resolve(path).write_text_atomic(text.getvalue())


def markdown(rows: list[TrialRow], keys: list[str]) -> str:
    header, body = _table(rows, keys)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def plot(rows: list[TrialRow], path: Path, total_steps: int) -> None:
    """The objective against step for every trial; stopped trials dashed and ending in an x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = _metric(rows)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for r in ranked(rows):
        if not r.history:
            continue
        steps, fmd = zip(*r.history)
        stopped = r.status != "completed"
        (line,) = ax.plot(steps, fmd, "--" if stopped else "-", marker="o", ms=3,
                          label=f"{r.trial_id} ({r.status}, {_fmt(r.objective)})")
        if stopped:
            ax.plot(steps[-1], fmd[-1], "x", color=line.get_color(), ms=9, mew=2)
    ax.set_xlabel("generator step")
    ax.set_ylabel(f"{metric} (lower is better)")
    if metric == "FMD":
        ax.set_yscale("log")  # quality can reach 0: linear
    ax.set_xlim(0, total_steps * 1.02)
    ax.set_title("objective per trial (dashed + x: stopped early)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    try:
        resolve(path).write_atomic(lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def write_all(rows: list[TrialRow], run: Path, keys: list[str], total_steps: int, manifest_hash: str | None = None):
    """results.csv, results.md, objective.png and best.json in ``run``; returns the best row."""
    write_csv(rows, run / "results.csv", keys)
    (run / "results.md").write_text(markdown(rows, keys))
    plot(rows, run / "objective.png", total_steps)
    best, by_fmd = best_row(rows), best_row(rows, by="FMD")
    record = {"best": asdict(best) if best else None, "metric": _metric(rows), "mode": "min",
              "best_by_FMD": asdict(by_fmd) if by_fmd else None,
              "feature_hash": manifest_hash, "trials": len(rows), "total_steps": total_steps,
              "step_fraction": step_fraction(rows, total_steps)}
    resolve(run / "best.json").write_json_atomic(record, default=str)
    return best


def _comparison(best: TrialRow, by_fmd: TrialRow, metric: str) -> list[str]:
    """The two promotion choices side by side on the voice measures (when they differ)."""
    if by_fmd is best or not best.measures:
        return []
    keys = [k for k in MEASURES if k in best.measures or k in by_fmd.measures]
    held = {k: best.measures.get("real/" + k.split("/", 1)[1], math.nan) if k.startswith("gen/") else math.nan
            for k in keys}
    width = max(len(MEASURES[k]) for k in keys)
    lines = ["  " + " " * 14 + "  ".join(f"{MEASURES[k]:>{max(width, 8)}}" for k in keys)]
    for label, values in ((f"by {metric}", best.measures), ("by FMD", by_fmd.measures), ("held-out", held)):
        lines.append(f"  {label:<14}" + "  ".join(f"{_fmt(values.get(k, math.nan)):>{max(width, 8)}}"
                                                  for k in keys))
    return lines


def step_fraction(rows: list[TrialRow], total_steps: int) -> float:
    """Trial-steps trained over trial-steps a search without early stopping would train."""
    return sum(r.steps_trained for r in rows) / max(1, len(rows) * total_steps)


def summary_text(rows: list[TrialRow], run: Path, total_steps: int, top: int = 8) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("completed", "stopped", "error")}
    best = best_row(rows)
    header, body = _table(rows, [k for k in (rows[0].params if rows else {})])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    metric = _metric(rows)
    keep = [i for i, h in enumerate(header) if h not in ("best_FMD", f"best_{metric}", "copies", "vertical")]
    lines = [f"tune: {len(rows)} trials: {counts['completed']} completed, {counts['stopped']} stopped early, "
             f"{counts['error']} failed; {step_fraction(rows, total_steps):.2f} of the full trial-steps used"]
    lines.append("  " + "  ".join(header[i].rjust(widths[i]) for i in keep))
    for b in body[:top]:
        lines.append("  " + "  ".join(b[i].rjust(widths[i]) for i in keep))
    if len(body) > top:
        lines.append(f"  ... {len(body) - top} more in results.md")
    if best:
        lines.append(f"  best         trial {best.trial_id}: {metric} {best.objective:.4g} at step {best.steps}"
                     + (f" (FMD {best.fmd:.4g})" if metric != "FMD" else ""))
        lines.append(f"  checkpoint   {best.checkpoint}")
        by_fmd = best_row(rows, by="FMD")
        if metric != "FMD" and by_fmd:
            lines.append(f"  by FMD alone " + ("the same trial" if by_fmd is best else
                         f"trial {by_fmd.trial_id}: FMD {by_fmd.fmd:.4g}, {metric} {by_fmd.objective:.4g}"))
            lines += _comparison(best, by_fmd, metric)
    for r in rows:
        if r.error:
            lines.append(f"  trial {r.trial_id} failed: {r.error}")
    lines.append(f"  files        {run}/results.csv, results.md, objective.png, best.json")
    lines.append(f"  next         musicgan promote --model {run} --registry models --name NAME")
    return "\n".join(lines)
