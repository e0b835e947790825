"""What the quality benchmarks share: the Bach build, and a preset trained on Ray Train workers as
``make demo`` trains it (or a trained run taken as given). Used by ``musical_quality.py`` and
``assistant_quality.py``."""

import argparse
import sys
import time
from pathlib import Path


def run_options(description: str, preset: str, out: str, n: int, n_help: str) -> argparse.ArgumentParser:
    """The options both benchmarks take: what to train (or judge), where, and how many phrases to judge."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seed", type=int, default=0, help="train.seed and the run's name (default 0)")
    ap.add_argument("--preset", default=preset, help=f"training preset (default {preset})")
    ap.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2, as make demo)")
    ap.add_argument("--out", default=out, help="folder for the data build and the runs")
    ap.add_argument("--data", default=None, help="an existing bach build (default: build into --out/data)")
    ap.add_argument("--model", "--checkpoint", dest="checkpoint", default=None,
                    help="judge this trained run or checkpoint instead of training")
    ap.add_argument("--n", type=int, default=n, help=f"{n_help} (default {n})")
    return ap


def bach_build(out: Path, data: str | None) -> str:
    """``data`` when given, else the embedded Bach chorales built into ``out/data/bach``."""
    if data is not None:
        return data
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build

    return build("bach", str(out / "data" / "bach"), FeatureConfig()).out


def train_or_take(args, out: Path, data: str) -> tuple[str | None, float | None]:
    """``(checkpoint, train_wall_s)``: ``args.checkpoint`` as given (no training), else a fresh run of
    ``args.preset`` on ``args.workers`` workers with ``train.seed = args.seed`` under ``out/runs``
    (``None`` checkpoint when training failed). ``train_wall_s`` is the ``fit`` call, Ray start-up included."""
    if args.checkpoint:
        return args.checkpoint, None
    from musicgan.presets import load_preset
    from musicgan.train import fit
    from musicgan.train import summary_text as train_summary

    cfg = load_preset(args.preset, [f"train.num_workers={args.workers}", f"train.seed={args.seed}"])
    run = out / "runs" / f"{args.preset}-seed{args.seed}"
    if run.exists():
        raise SystemExit(f"{run} exists: a finished run would only be resumed; give another --out or remove it")
    t0 = time.perf_counter()
    result = fit(cfg, str(data), str(run))
    train_wall_s = time.perf_counter() - t0
    print(train_summary(result, str(run)), flush=True)
    if result.error is not None:
        print(f"training failed: {result.error}", file=sys.stderr)
        return None, train_wall_s
    return str(run), train_wall_s


def prepare(args) -> tuple[Path, str, str | None, float | None]:
    """``(out folder, data build, checkpoint or None when training failed, train_wall_s)`` for the parsed
    :func:`run_options`."""
    out = Path(args.out).resolve()
    data = bach_build(out, args.data)
    checkpoint, train_wall_s = train_or_take(args, out, data)
    return out, data, checkpoint, train_wall_s
