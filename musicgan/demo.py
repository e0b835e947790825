"""``musicgan demo``: the main job end to end on the embedded Bach chorales, on one machine.

build the data -> train the ``cpu-masked`` preset on 2 Ray Train workers -> sample -> evaluate ->
promote into demo/models (with its originality index and example melodies) -> serve it over HTTP
(until Ctrl-C; ``--no-serve`` stops before). The masked model both generates from scratch and
harmonizes, continues and fills in: the served page and the printed curl lines use both.
"""

from __future__ import annotations

import time
from pathlib import Path


def run_demo(out: str, workers: int = 2, steps: int | None = None, preset: str = "cpu-masked", serve: bool = True,
             port: int = 8000) -> int:
    from musicgan.checkpoint import find_latest
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build, summary_text
    from musicgan.evaluate import evaluate, table_text
    from musicgan.presets import load_preset
    from musicgan.train import fit
    from musicgan.train import summary_text as train_summary

    root = Path(out).resolve()
    t0 = time.time()
    print("== 1/4 data: Bach chorales from music21 -> Parquet shards", flush=True)
    built = build("bach", str(root / "data" / "bach"), FeatureConfig())
    print(summary_text(built), flush=True)

    print(f"\n== 2/4 train: preset {preset}, {workers} Ray Train workers", flush=True)
    overrides = [f"train.num_workers={workers}"] + ([f"train.total_steps={steps}"] if steps else [])
    cfg = load_preset(preset, overrides)
    run = root / "runs" / f"bach-{preset}"
    result = fit(cfg, built.out, str(run))
    print(train_summary(result, str(run)), flush=True)
    if result.error is not None:
        return 1

    print("\n== 3/4 sample: 8 phrases as MIDI, WAV and a pianoroll PNG", flush=True)
    from musicgan.checkpoint import load_generator
    from musicgan.gan import generate
    from musicgan.render import write_samples

    latest = find_latest(run)
    g, _, data, _ = load_generator(latest)
    samples = root / "samples"
    write_samples(generate(g, 8, seed=0).numpy(), data, samples)

    print("\n== 4/4 evaluate: 1000 generated phrases against held-out chorales", flush=True)
    report = evaluate(str(latest), built.out, n=1000, json_path=str(root / "evaluation.json"))
    print(table_text(report))

    minutes = (time.time() - t0) / 60
    print(f"\ndemo: done in {minutes:.1f} min. Where everything is:")
    print(f"  data         {built.out}/manifest.json")
    print(f"  checkpoint   {latest}")
    print(f"  metrics      {run}/metrics.csv, {run}/metrics.png, {run}/losses.png, "
          f"tensorboard --logdir {run}/tensorboard")
    print(f"  samples      {samples}/ (sample_*.mid, sample_*.wav, samples.png)")
    print(f"  evaluation   {root / 'evaluation.json'}")

    from musicgan.registry import promote
    from musicgan.registry import summary_text as promote_summary

    print("\n== promote: the trained generator into the model registry", flush=True)
    record = promote(run, str(root / "models"), "bach")
    print(promote_summary(record), flush=True)
    if not serve:
        return 0
    from musicgan.serve_cli import serve_until_interrupted

    print("\n== serve: Ray Serve on 127.0.0.1", flush=True)
    return serve_until_interrupted(str(root / "models" / "bach" / "latest"), port=port, check=True)
