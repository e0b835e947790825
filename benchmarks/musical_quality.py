"""Musical quality of the demo model: train a preset as `make demo` does, evaluate it, judge every target.

1. Build the embedded Bach chorales (or reuse ``--data``), then train ``--preset`` (default ``cpu``)
   on ``--workers`` Ray Train workers (default 2) through ``musicgan.train.fit``, as ``musicgan demo``
   does, with ``train.seed`` set to ``--seed``. ``--checkpoint`` skips training and judges a trained run.
2. Evaluate 1,000 generated phrases against the held-out chorales with ``musicgan.evaluate.evaluate``:
   today's measures (QN, UPC, EB, polyphony, in-scale, TD), the voice measures (pitch range, leap,
   octave leaps, parallel fifths/octaves, crossing, spacing), vertical intervals, the classifier
   two-sample test (C2ST), FMD against the untrained generator, diversity and copies.
3. Print the evaluate table, then one JSON line: for every measure ``<measure>`` its generated value,
   ``<measure>_real`` (the held-out value, or the floor a distance is judged against),
   ``<measure>_target`` and a boolean ``<measure>_met``; ``all_met``; ``quality`` (the search
   objective); ``train_wall_s`` (the ``fit`` call, Ray start-up included), ``train_limit_s`` (the
   issue's 15 minutes) and ``checkpoint``.

Run it with seeds 0, 1 and 2 and report the median and the worst (README, issue 12):

    python benchmarks/musical_quality.py --seed 0 [--out DIR] [--data BUILD] [--preset cpu]
    python benchmarks/musical_quality.py --model RUN --data BUILD
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_run import prepare, run_options  # noqa: E402

TRAIN_LIMIT_S = 15 * 60


def flat_checks(report: dict) -> dict:
    """``report['checks']`` as flat JSON fields: value, held-out value or floor, target, met."""
    out = {}
    for key, c in report["checks"].items():
        value = c.get("generated", c.get("value"))
        out[key] = value
        out[f"{key}_real"] = c.get("real", c.get("floor"))
        out[f"{key}_target"] = c["target"]
        out[f"{key}_met"] = bool(c["ok"])
    return out


def main() -> int:
    ap = run_options(__doc__.split("\n\n")[0], "cpu", "bench-quality", 1000, "generated phrases to evaluate")
    args = ap.parse_args()

    from musicgan.evaluate import evaluate, table_text

    out, data, checkpoint, train_wall_s = prepare(args)
    if checkpoint is None:
        return 1

    report = evaluate(checkpoint, str(data), n=args.n, seed=0,
                      json_path=str(out / f"evaluation-{args.preset}-seed{args.seed}.json"))
    print(table_text(report), flush=True)
    m = report["metrics"]
    line = {"benchmark": "musical_quality", "preset": args.preset, "seed": args.seed, "workers": args.workers,
            "step": report["step"], "n": args.n, **flat_checks(report), "all_met": bool(report["passed"]),
            "missed": [k for k, c in report["checks"].items() if not c["ok"]],
            "quality": m.get("quality"), "FMD": m["FMD"], "FMD_floor": m.get("FMD_floor"),
            "train_wall_s": None if train_wall_s is None else round(train_wall_s, 1),
            "train_limit_s": TRAIN_LIMIT_S,
            "train_within_limit": None if train_wall_s is None else train_wall_s <= TRAIN_LIMIT_S,
            "checkpoint": report["checkpoint"], "evaluation_json": report["json_path"]}
    print(json.dumps(line, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
