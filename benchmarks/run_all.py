"""Run the benchmarks one after another and write one summary table (``make bench``).

Each benchmark is its own process (its own Ray), run as ``python benchmarks/NAME.py``; its last line
is one JSON object. Every key ``<figure>_met`` there is a target: the table shows the figure (the
median, where the benchmark repeats), its worst run (``<figure>_worst``) when given, the target
(``<figure>_target``) and met or missed. A benchmark that fails or prints no JSON gets a row saying so,
and the others still run.

    python benchmarks/run_all.py [--only ingest,serve_load] [--out bench-summary.md]

The summary goes to ``--out`` (Markdown, written whole at the end) and to stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("ingest", "ingest_feed", "train_overhead", "tune_efficiency", "serve_load", "audio_quality",
              "musical_quality", "assistant_quality", "style_quality")
"""In the order they run: the quick speed figures first, the training-quality ones (each trains a preset) last.
``gpu_check`` is not here: it needs a GPU."""


def last_json(stdout: str) -> dict | None:
    """The last line of ``stdout`` that parses as a JSON object (None when there is none)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def rows(name: str, result: dict | None, problem: str | None = None) -> list[list[str]]:
    """Table rows for one benchmark's JSON: one per ``<figure>_met`` key."""
    if result is None:
        return [[name, "-", "-", "-", "-", f"no result: {problem or 'no JSON line'}"]]
    out = []
    for key in result:
        if not key.endswith("_met") or key == "all_met":
            continue
        figure = key[: -len("_met")]
        out.append([name, figure, _shown(result.get(figure)), _shown(result.get(f"{figure}_worst")),
                    _shown(result.get(f"{figure}_target")), "met" if result[key] else "missed"])
    return out or [[name, "-", "-", "-", "-", "no targets in its JSON"]]


def table(all_rows: list[list[str]]) -> str:
    head = ["benchmark", "figure", "value (median)", "worst run", "target", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in all_rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="comma-separated benchmark names (default: all)")
    ap.add_argument("--out", default="bench-summary.md", help="where the summary table goes")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if not (HERE / f"{n}.py").is_file()]
    if unknown:
        print(f"error: no benchmark {', '.join(unknown)}; there are {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    all_rows, missed, t0 = [], 0, time.time()
    for name in names:
        print(f"== {name}", flush=True)
        run = subprocess.run([sys.executable, str(HERE / f"{name}.py")], capture_output=True, text=True)
        sys.stdout.write(run.stdout[-4000:])
        result = last_json(run.stdout)
        problem = None if run.returncode == 0 else f"exit status {run.returncode}: {run.stderr.strip()[-200:]}"
        benchmark_rows = rows(name, result if run.returncode == 0 or result else None, problem)
        missed += sum(r[-1] != "met" for r in benchmark_rows)
        all_rows += benchmark_rows
    text = table(all_rows)
    Path(args.out).write_text(f"# Benchmarks ({time.strftime('%Y-%m-%d %H:%M')}, {(time.time() - t0) / 60:.0f} min)\n\n"
                              + text + "\n")
    print(f"\n{text}\n\nbench: {len(all_rows) - missed} of {len(all_rows)} targets met; table in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
