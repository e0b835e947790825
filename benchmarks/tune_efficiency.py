"""What ASHA saves, and what it costs in quality: the same trials with and without early stopping.

Runs one search space twice on the Bach chorales, with the same sampler seed (so the same trial
configurations) and the same training seed:

* under ASHA (``--scheduler asha``), and
* with every trial run to the end (``--scheduler none``).

Last line: JSON with

* ``step_fraction``: trial-steps ASHA trained / trial-steps of the full search (target <= 0.5);
  a stopped trial's steps count up to where its Train run really stopped, not where Tune decided.
* ``regret``: ASHA's best final FMD relative to the full search's best, minus one (target <= 0.10).
* ``noise``: the same configuration's final FMD in the two searches (the best full-search trial,
  where ASHA also finished it), as a relative difference: how much of the regret is run-to-run noise.

    python benchmarks/tune_efficiency.py [--trials 8] [--steps 60] [--every 6] [--reduction-factor 3]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60, help="generator steps per full trial")
    ap.add_argument("--every", type=int, default=6, help="evaluation (and report) interval in steps")
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "tuning/spaces/default.yaml"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()

    from musicgan.config import FeatureConfig
    from musicgan.data.build import build
    from musicgan.ray_utils import ensure_ray
    from tuning.search import SearchSpec, run_search

    out = Path(args.out or tempfile.mkdtemp(prefix="tune-bench-"))
    ensure_ray()
    data = build("bach", str(out / "data"), FeatureConfig(), progress=False)
    overrides = [f"train.total_steps={args.steps}", f"train.eval_every_steps={args.every}"]
    runs = {}
    for scheduler in ("asha", "none"):
        spec = SearchSpec(data_dir=data.out, space=args.space, run_dir=str(out / scheduler), trials=args.trials,
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
    print(f"ASHA: {steps_asha} trial-steps in {asha['seconds']:.0f} s; full: {steps_full} trial-steps in "
          f"{full['seconds']:.0f} s; best FMD {asha['best'].fmd:.3f} vs {full['best'].fmd:.3f}")
    print(json.dumps({"benchmark": "tune_efficiency", "trials": args.trials, "steps": args.steps,
                      "reduction_factor": args.reduction_factor, "step_fraction": round(steps_asha / steps_full, 3),
                      "regret": round(regret, 4), "noise": None if math.isnan(noise) else round(noise, 4),
                      "seconds_asha": round(asha["seconds"], 1), "seconds_full": round(full["seconds"], 1),
                      "target_step_fraction": 0.5, "target_regret": 0.10}))


if __name__ == "__main__":
    main()
