"""Ingest speed: the project's per-file feature extraction against a pretty_midi baseline.

Both run in this one process over the same cached Bach chorale MIDI files, on the same grid:
- ours: read bytes as the build does (``musicgan.data.build.read_input``), symusic parse, pianoroll
  (numba kernel), phrases (``musicgan.data.pianoroll.midi_to_phrases``);
- baseline: ``pretty_midi.PrettyMIDI(path)`` plus ``get_piano_roll(fs)`` for every instrument,
  with ``fs`` chosen so one column is one grid step at the file's tempo.

The ratio is measured ``--runs`` times (3 by default), each run fresh rounds of both sides, and
reported as the median run with the worst beside it: a target met once, by a hair, is not met.
Then the whole ``data build`` (Ray Data, all cores) on the corpus copied up to ``--build-files``.
Last line: one JSON object: ``ratio`` (the median run), ``ratio_worst``, ``ratio_runs``,
``ratio_target`` and ``ratio_met`` (the median >= the target, 100).

    python benchmarks/ingest.py [--runs 3] [--rounds 3] [--build-files 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgan.config import FeatureConfig  # noqa: E402
from musicgan.data.corpus import ensure_converted  # noqa: E402
from musicgan.data.build import read_input  # noqa: E402
from musicgan.data.pianoroll import midi_to_phrases  # noqa: E402
from musicgan.storage import resolve  # noqa: E402


def ours(paths, fc):
    base = resolve(str(paths[0].parent))
    for p in paths:
        midi_to_phrases(read_input(base, str(p), fc), fc)


def baseline(paths, fc):
    import pretty_midi

    for p in paths:
        pm = pretty_midi.PrettyMIDI(str(p))
        qpm = pm.get_tempo_changes()[1][0]
        fs = (fc.steps_per_bar // 4) * qpm / 60.0
        for inst in pm.instruments:
            inst.get_piano_roll(fs=fs)


def files_per_s(fn, paths, fc, rounds):
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(paths, fc)
        rates.append(len(paths) / (time.perf_counter() - t0))
    return statistics.median(rates)


RATIO_TARGET = 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="times the ratio is measured (median and range reported)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each side in one run (their median)")
    ap.add_argument("--build-files", type=int, default=10_000, help="files for the whole-build figure (0 skips)")
    args = ap.parse_args()

    fc = FeatureConfig()
    midi, _ = ensure_converted("bach")
    paths = sorted(midi)
    ours(paths[:20], fc)  # warm caches, imports and the jitted kernels for both
    baseline(paths[:5], fc)
    print(f"per-file extraction, one process, {len(paths)} chorales, {args.runs} runs of {args.rounds} rounds each:")
    runs = []
    for i in range(args.runs):
        ours_rate = files_per_s(ours, paths, fc, args.rounds)
        base_rate = files_per_s(baseline, paths, fc, args.rounds)
        runs.append((ours_rate / base_rate, ours_rate, base_rate))
        print(f"  run {i + 1}: musicgan (symusic + numba) {ours_rate:8.1f} files/s, "
              f"pretty_midi {base_rate:6.1f} files/s, ratio {runs[-1][0]:6.1f}x", flush=True)
    ratios = [r[0] for r in runs]
    ratio = statistics.median(ratios)
    ours_rate, base_rate = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
    met = ratio >= RATIO_TARGET
    print(f"  ratio: median {ratio:.1f}x, min {min(ratios):.1f}x, max {max(ratios):.1f}x "
          f"(target >= {RATIO_TARGET:.0f} at the median: {'met' if met else 'missed'})")

    result = {"files_per_s": round(ours_rate, 1), "baseline_files_per_s": round(base_rate, 1),
              "ratio": round(ratio, 1), "ratio_worst": round(min(ratios), 1), "ratio_best": round(max(ratios), 1),
              "ratio_runs": [round(r, 1) for r in ratios], "ratio_target": RATIO_TARGET, "ratio_met": met}
    if args.build_files:
        from musicgan.data.build import build

        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "midi"
            src.mkdir()
            for i in range(args.build_files):
                p = paths[i % len(paths)]
                shutil.copyfile(p, src / f"{i:05d}-{p.name}")
            t0 = time.perf_counter()
            res = build(str(src), str(Path(tmp) / "out"), fc, files_per_shard=256, progress=False)
            seconds = time.perf_counter() - t0
        c = res.manifest["counts"]
        build_rate = c["files_ok"] / seconds
        print(f"whole data build (Ray Data, all cores): {c['files_ok']} files, {c['examples']} phrases, "
              f"{c['shards']} shards in {seconds:.1f} s = {build_rate:.0f} files/s (includes Ray start-up)")
        result.update(build_files=c["files_ok"], build_seconds=round(seconds, 1),
                      build_files_per_s=round(build_rate, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
