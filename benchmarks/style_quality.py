"""Style quality (issue 16): one model trained on the embedded styles, conditioned on the style, judged
per style and across styles (:mod:`musicgan.style_eval`).

Builds the ``styles`` source (the chorales, Palestrina, Monteverdi, the string quartets; every phrase
labelled with its style), trains ``--preset`` on 2 Ray Train workers (the label conditions G and D:
the data has several labels), then reports:

* per style, against that style's own held-out phrases: the evaluate targets met (metrics within 15%,
  FMD ratio <= 0.25, diversity >= 0.8, copies < 1%);
* style accuracy: the share of generated phrases a classifier trained on real held-out phrases puts in
  the style asked for, over that classifier's own accuracy on real held-out phrases (its ceiling);
  target >= 0.8;
* style separation: for every pair of styles, FMD between the generated sets over FMD between the
  real sets; target >= 0.7 (the minimum over pairs);
* the training time; target <= 30 minutes here.

Ends with one JSON line: each figure, a boolean ``<figure>_met`` per target, and the checkpoint.

    python benchmarks/style_quality.py [--preset cpu-styles] [--data BUILD] [--model RUN] [--n 256]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_run import run_options, train_or_take  # noqa: E402

TRAIN_MINUTES_MAX = 30.0


def styles_build(out: Path, data: str | None) -> str:
    if data is not None:
        return data
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build

    return build("styles", str(out / "data" / "styles"), FeatureConfig()).out


def main() -> int:
    from musicgan.style_eval import STYLE_ACCURACY_OF_CEILING_MIN, STYLE_SEPARATION_MIN, evaluate_styles

    ap = run_options(__doc__.split("\n")[0], "cpu-styles", "/tmp/musicgan-style-quality", 256, "generated phrases per style")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    data = styles_build(out, args.data)
    checkpoint, train_s = train_or_take(args, out, data)
    if checkpoint is None:
        print(json.dumps({"error": "training failed", "train_minutes": None if train_s is None else train_s / 60}))
        return 1
    report = evaluate_styles(checkpoint, data, n_per_style=args.n, seed=args.seed)
    print(f"\nstyle quality of {report['checkpoint']} (step {report['step']}), {args.n} phrases per style")
    print(f"{'style':<12} {'held-out':>8} {'targets met':>12} {'FMD ratio':>10} {'diversity':>10} {'copies':>7}"
          f" {'as asked':>9}")
    per_style_met = {}
    for name, r in report["per_style"].items():
        if "skipped" in r:
            print(f"{name:<12} skipped: {r['skipped']}")
            per_style_met[name] = False
            continue
        per_style_met[name] = r["targets_met"] == r["targets"]
        print(f"{name:<12} {r['held_out']:>8} {r['targets_met']:>6}/{r['targets']:<5} {r['FMD_ratio'] or 0:>10.3f} "
              f"{r['diversity']:>10.3f} {r['copies'] or 0:>7.2%} {report['style_accuracy_per_style'].get(name, 0):>9.2f}")
    of_ceiling = report["style_accuracy_of_ceiling"]
    print(f"style accuracy {report['style_accuracy']:.3f} of a ceiling {report['classifier_ceiling']:.3f} "
          f"(real held-out): {of_ceiling:.3f} (target >= {STYLE_ACCURACY_OF_CEILING_MIN})")
    for pair, v in report["separation"].items():
        print(f"separation {pair}: generated {v['generated']:.3f} / real {v['real']:.3f} = "
              f"{v['ratio'] if v['ratio'] is None else round(v['ratio'], 3)}")
    train_minutes = None if train_s is None else train_s / 60
    line = {"benchmark": "style_quality", "checkpoint": report["checkpoint"], "step": report["step"],
            "styles": report["styles"], "preset": args.preset, "seed": args.seed,
            "per_style_targets_met": {k: f"{r.get('targets_met', 0)}/{r.get('targets', 0)}"
                                      for k, r in report["per_style"].items()},
            "every_style_meets_evaluate_targets": all(per_style_met.values()),
            "every_style_meets_evaluate_targets_met": all(per_style_met.values()),
            "style_accuracy": report["style_accuracy"], "classifier_ceiling": report["classifier_ceiling"],
            "style_accuracy_of_ceiling": of_ceiling,
            "style_accuracy_of_ceiling_met": of_ceiling is not None and of_ceiling >= STYLE_ACCURACY_OF_CEILING_MIN,
            "style_separation_min": report["separation_min"],
            "style_separation_min_met": report["separation_min"] is not None
            and report["separation_min"] >= STYLE_SEPARATION_MIN,
            "train_minutes": train_minutes,
            "train_minutes_met": train_minutes is not None and train_minutes <= TRAIN_MINUTES_MAX}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
