"""``musicgan demo``: the main job end to end on the embedded Bach chorales, on one machine.

build the data -> train the ``cpu`` preset on 2 Ray Train workers -> sample -> evaluate ->
promote into demo/models -> serve it over HTTP (until Ctrl-C; ``--no-serve`` stops before).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path


def run_demo(out: str, workers: int = 2, steps: int | None = None, preset: str = "cpu", serve: bool = True,
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
    run = root / "runs" / "bach-cpu"
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
    return serve_until_interrupted(str(root / "models" / "bach" / "latest"), port)


def serve_until_interrupted(model: str, port: int) -> int:
    """Serve ``model``, prove one request works, print how to call it, and keep serving until Ctrl-C."""
    import json
    import urllib.request

    from ray import serve

    from serving.app import start
    from serving.app import summary_text as serve_summary

    print("\n== serve: Ray Serve on 127.0.0.1", flush=True)
    start(model, port=port)
    url = f"http://127.0.0.1:{port}"
    req = urllib.request.Request(url + "/v1/generate", data=json.dumps({"seed": 7, "format": "midi"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        checked = f"checked: POST /v1/generate -> {r.status}, {len(r.read())} bytes of {r.headers['content-type']}"
    with urllib.request.urlopen(url + "/v1/model", timeout=60) as r:
        print(serve_summary(url, json.loads(r.read())))
    print(f"  {checked}")
    print("  serving until Ctrl-C", flush=True)
    # Ray Train's fit() left its own SIGINT handler (it aborts a run that is over): take Ctrl-C back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        print("serve: stopped")
    return 0
