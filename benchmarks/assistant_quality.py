"""The creation assistant's quality: train a masked preset on 2 workers, judge every task's target.

1. Build the embedded Bach chorales (or reuse ``--data``), then train ``--preset`` (default
   ``cpu-masked-long``, the 30-minute preset; ``cpu-masked`` is the 15-minute one) on ``--workers``
   Ray Train workers (default 2) through ``musicgan.train.fit``, with ``train.seed`` = ``--seed``.
   ``--model`` skips training and judges a trained run or checkpoint.
2. Run ``musicgan evaluate --task all`` (:func:`musicgan.assist.evaluate.evaluate_tasks`) on ``--n``
   held-out phrases: harmonize (soprano given), continue (2 bars given), long (32-bar pieces) and the
   unconditional evaluate table, each beside Bach's own figures and the clamp and random baselines.
3. Print the table, then one JSON line: every target as ``<figure>`` (its value), ``<figure>_target``
   and a boolean ``<figure>_met``; ``all_met``; ``missed``; the main figures beside Bach's and the
   baselines'; ``train_wall_s`` (the ``fit`` call, Ray start-up included), ``train_limit_s`` and
   ``checkpoint``.

    python benchmarks/assistant_quality.py [--preset cpu-masked-long] [--seed 0] [--out DIR] [--data BUILD]
    python benchmarks/assistant_quality.py --model RUN --data BUILD
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_run import prepare, run_options  # noqa: E402

TRAIN_LIMIT_S = {"cpu-masked": 15 * 60, "cpu-masked-long": 30 * 60}


def main() -> int:
    ap = run_options(__doc__.split("\n\n")[0], "cpu-masked-long", "bench-assistant", 512, "held-out phrases per task")
    args = ap.parse_args()

    from musicgan.assist.evaluate import evaluate_tasks, table_text

    out, data, checkpoint, train_wall_s = prepare(args)
    if checkpoint is None:
        return 1

    report = evaluate_tasks(checkpoint, str(data), task="all", n=args.n, seed=0,
                            json_path=str(out / f"evaluation-tasks-{args.preset}-seed{args.seed}.json"))
    print(table_text(report), flush=True)
    tasks = report["tasks"]
    line = {"benchmark": "assistant_quality", "preset": args.preset, "seed": args.seed, "workers": args.workers,
            "step": report["step"], "n": report["n"]}
    for key, t in report["targets"].items():
        line[key] = t["value"]
        line[f"{key}_target"] = t["target"]
        line[f"{key}_met"] = t["met"]
    line["all_met"] = bool(report["passed"])
    line["missed"] = [k for k, t in report["targets"].items() if not t["met"]]
    h, c, lg = tasks["harmonize"], tasks["continue"], tasks["long"]
    line["figures"] = {
        "harmonize_chord_agreement": {k: h[k]["chord_agreement"] for k in ("ours", "clamp", "random")},
        "harmonize_spread": {k: h[k].get("spread") for k in ("ours", "random", "bach")},
        "continue_key_agreement": {k: c[k]["key_agreement"] for k in ("ours", "clamp", "random", "bach")},
        "continue_seam_smoothness": {k: c[k]["seam_smoothness"] for k in ("ours", "clamp", "random", "bach")},
        "long_key_change_rate": {k: lg[k]["key_change_rate"] for k in ("ours", "side_by_side", "bach")},
        "long_seam_smoothness": {k: lg[k]["seam_smoothness"] for k in ("ours", "side_by_side", "bach")},
        "unconditional_quality": tasks["unconditional"]["metrics"]["quality"],
    }
    line["train_wall_s"] = None if train_wall_s is None else round(train_wall_s, 1)
    line["train_limit_s"] = TRAIN_LIMIT_S.get(args.preset)
    line["train_within_limit"] = (None if train_wall_s is None or line["train_limit_s"] is None
                                  else train_wall_s <= line["train_limit_s"])
    line["eval_seconds"] = report["seconds"]
    line["checkpoint"] = report["checkpoint"]
    line["evaluation_json"] = report["json_path"]
    print(json.dumps(line, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
