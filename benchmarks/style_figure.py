"""One pianoroll per style from the same seed (the README's styles figure): a model trained on the
``styles`` build writes ``--n`` phrases in each of its styles from the same latents (seeds
``seed .. seed + n - 1``), so only the style label differs between the rows.

    python benchmarks/style_figure.py --model RUN [--seed 0] [--n 2] [--out benchmarks/figures/styles.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import numpy as np
    import torch

    from musicgan.checkpoint import find_latest, load_generator
    from musicgan.gan import generate
    from musicgan.render import pianoroll_png

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a run folder or checkpoint trained on the styles build")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=2, help="phrases per style (default 2)")
    ap.add_argument("--out", default="benchmarks/figures/styles.png")
    args = ap.parse_args()
    path = find_latest(args.model)
    g, _, data, meta = load_generator(path)
    styles = list(data["labels"])
    if len(styles) < 2:
        print(f"error: {path} was trained on one style; train on `data build --source styles`", file=sys.stderr)
        return 2
    rolls = np.concatenate([generate(g, args.n, seed=args.seed, labels=torch.full((args.n,), s)).numpy()
                            for s in range(len(styles))])
    title = (f"rows, top to bottom: {', '.join(styles)}; seeds {args.seed}-{args.seed + args.n - 1}, the same "
             f"latents in every row (step {meta['step']})")
    pianoroll_png(rolls, data, args.out, title=title, columns=args.n)
    print(json.dumps({"figure": args.out, "checkpoint": str(path), "step": meta["step"], "styles": styles,
                      "seed": args.seed, "per_style": args.n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
