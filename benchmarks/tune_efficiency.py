"""What ASHA saves, and what it costs in quality: the same trials with and without early stopping.

Runs one search space twice on the Bach chorales, with the same sampler seed (so the same trial
configurations) and the same training seed:

* under ASHA (``--scheduler asha``), and
* with every trial run to the end (``--scheduler none``).

and repeats the pair ``--runs`` times (default 3): which trials ASHA stops depends on the order in
which results arrive, so one run is one draw. Each figure is printed as median [min, max].

Last line: JSON with, for each figure, the median and the worst run (``<figure>_worst``) and
``<figure>_met`` judged on the median (issue 17):

* ``step_fraction``: trial-steps ASHA trained / trial-steps of the full search (target <= 0.5);
  a stopped trial's steps count up to where its Train run really stopped, not where Tune decided.
* ``regret``: ASHA's best final FMD relative to the full search's best, minus one (target <= 0.10).
* ``noise``: the same configuration's final FMD in the two searches (the best full-search trial,
  where ASHA also finished it), as a relative difference: how much of the regret is run-to-run noise.
* ``wasted_steps``: steps stopped trials trained after the scheduler stopped them, summed over a
  run, and ``wasted_seconds_max``, the longest a stopped trial's Train run went on. Each run also
  prints, per stopped trial, the step Tune decided at, the step its Train run stopped at, and the
  seconds between (tuning/results.py, stop_waste).

    python benchmarks/tune_efficiency.py [--runs 3] [--trials 8] [--steps 60] [--every 6] [--reduction-factor 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


TARGETS = {"step_fraction": 0.5, "regret": 0.10}  # both at most


def one_run(args, data_dir: str, out: Path) -> dict:
    """ASHA and the full search once each; the figures of this pair."""
    from tuning.results import stop_waste
    from tuning.search import SearchSpec, run_search

    overrides = [f"train.total_steps={args.steps}", f"train.eval_every_steps={args.every}"]
    runs = {}
    for scheduler in ("asha", "none"):
        spec = SearchSpec(data_dir=data_dir, space=args.space, run_dir=str(out / scheduler), trials=args.trials,
                          scheduler=scheduler, preset=args.preset, overrides=overrides, seed=args.seed,
                          reduction_factor=args.reduction_factor,
                          objective="FMD")  # regret and noise below are FMD ratios, as in the README figures
        t0 = time.perf_counter()
        rows, best = run_search(spec, progress=False)
        runs[scheduler] = {"rows": rows, "best": best, "seconds": time.perf_counter() - t0}

    asha, full = runs["asha"], runs["none"]
    steps_asha = sum(r.steps_trained for r in asha["rows"])
    steps_full = sum(r.steps_trained for r in full["rows"])
    regret = asha["best"].fmd / full["best"].fmd - 1
    key = lambda r: json.dumps(r.params, sort_keys=True)  # noqa: E731 - same configuration in both searches
    same = {key(r): r for r in asha["rows"]}.get(key(full["best"]))
    noise = (same.fmd / full["best"].fmd - 1) if same and same.status == "completed" else math.nan

    print(f"{'trial config':60s} {'ASHA':>18s} {'full':>10s}")
    by_key = {key(r): r for r in asha["rows"]}
    for r in sorted(full["rows"], key=lambda r: r.fmd):
        a = by_key.get(key(r))
        cfg = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                        for k, v in r.params.items())
        status = f"{a.fmd:.3f} {a.status[:4]}@{a.steps_trained}" if a else "-"
        print(f"{cfg[:60]:60s} {status:>18s} {r.fmd:10.3f}")
    waste = stop_waste(asha["rows"])
    print(f"{'stopped trial':14s} {'decided at':>10s} {'stopped at':>10s} {'wasted':>7s} {'seconds':>8s}")
    for w in waste:
        print(f"{w['trial_id']:14s} {w['decided_step']:10d} {w['stopped_step']:10d} {w['wasted_steps']:7d} "
              f"{w['seconds']:8.2f}")
    print(f"ASHA: {steps_asha} trial-steps in {asha['seconds']:.0f} s; full: {steps_full} trial-steps in "
          f"{full['seconds']:.0f} s; best FMD {asha['best'].fmd:.3f} vs {full['best'].fmd:.3f}")
    return {"step_fraction": steps_asha / steps_full, "regret": regret, "noise": noise,
            "seconds_asha": asha["seconds"], "seconds_full": full["seconds"],
            "wasted_steps": sum(w["wasted_steps"] for w in waste),
            "wasted_seconds_max": max((w["seconds"] for w in waste if not math.isnan(w["seconds"])),
                                      default=math.nan), "stopped": len(waste),
            "waste": waste}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="ASHA + full search pairs (default 3)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60, help="generator steps per full trial")
    ap.add_argument("--every", type=int, default=6, help="evaluation (and report) interval in steps")
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "tuning/spaces/default.yaml"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    from musicgan.config import FeatureConfig
    from musicgan.data.build import build
    from musicgan.ray_utils import ensure_ray

    out = Path(args.out or tempfile.mkdtemp(prefix="tune-bench-"))
    ensure_ray()
    data = build("bach", str(out / "data"), FeatureConfig(), progress=False)

    def number(v):
        return (None if math.isnan(v) else round(v, 4)) if isinstance(v, float) else v

    results = []
    for i in range(args.runs):
        print(f"--- run {i + 1} of {args.runs}", flush=True)
        results.append(one_run(args, data.out, out / f"run{i}"))
        print(json.dumps({"run": i + 1, **{k: number(v) for k, v in results[-1].items() if k != "waste"}}),
              flush=True)  # each run's figures as soon as it ends: a long benchmark cut short keeps them

    def figure(k):
        """median, min, max, and the worst run: the highest, or for noise (signed) the farthest from 0."""
        values = [r[k] for r in results if not math.isnan(r[k])]
        if not values:
            return (math.nan,) * 4
        worst = max(values, key=abs) if k == "noise" else max(values)
        return statistics.median(values), min(values), max(values), worst

    report = {"benchmark": "tune_efficiency", "runs": args.runs, "trials": args.trials, "steps": args.steps,
              "every": args.every, "reduction_factor": args.reduction_factor}
    print(f"over {args.runs} run(s): median [min, max]")
    for k in ("step_fraction", "regret", "noise", "wasted_steps", "wasted_seconds_max", "seconds_asha",
              "seconds_full"):
        med, lo, hi, worst = figure(k)
        target = f"  (target <= {TARGETS[k]}: {'met' if med <= TARGETS[k] else 'MISSED'} at the median)" \
            if k in TARGETS else ""
        print(f"  {k:20s} {med:8.3f} [{lo:.3f}, {hi:.3f}]{target}")
        report[k] = None if math.isnan(med) else round(med, 4)
        report[f"{k}_worst"] = None if math.isnan(worst) else round(worst, 4)
        if k in TARGETS:
            report[f"target_{k}"] = TARGETS[k]
            report[f"{k}_met"] = bool(med <= TARGETS[k])
    report["per_run"] = [{k: number(v) for k, v in r.items() if k != "waste"} for r in results]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
