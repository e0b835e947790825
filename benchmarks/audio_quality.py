"""The spectrogram GAN's targets, measured: pitch accuracy, generation speed, Fréchet distance.

1. Build the embedded ``notes`` set (6 instruments x 36 pitches x 2 velocities; cached) and train
   the ``audio-cpu`` preset on it through Ray Train (``musicgan.train.fit``, 1 worker), unless
   ``--checkpoint`` names a trained one.
2. **Pitch accuracy** (pYIN, within half a semitone) of ``--n`` generated clips spread over the
   whole pitch x instrument grid, against the same measure on every training clip inverted the same
   way (mel -> Griffin-Lim): the ceiling of this pipeline. The tracker on the rendered audio itself
   (no mel round trip) is printed too. Target: ratio >= 0.9.
3. **Speed**: seconds of audio per second of wall time for a batch of 16 clips, generator forward +
   batched Griffin-Lim, median of 7 runs after a warm-up. The baseline in the same run is librosa's
   own path (``librosa.feature.inverse.mel_to_audio``, clip by clip, same iterations). Target >= 100x.
4. **Fréchet distance** over mel statistics: the trained generator against an untrained one of the
   same architecture and seed, both against all training clips. Target: ratio <= 0.25.

Last line: JSON.

Every figure over ``--seeds`` (default 3 training seeds): each run, the median, the worst, and
``<figure>_met`` judged on the median. ``MUSICGAN_SYNTH=sine`` builds the data with the additive
synthesizer even where FluidSynth and a soundfont are installed (the other data path).

    python benchmarks/audio_quality.py [--checkpoint RUN] [--data DIR] [--steps N] [--n 256] [--seeds 0,1,2] [--set KEY=VALUE]
"""

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def build_notes(out: str):
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build

    fc = FeatureConfig(kind="mel", clip_seconds=1.0, n_mels=80, pitch_low=48, pitch_high=84)
    return build("notes", out, fc, progress=False)


def timed(fn, repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(args, data_dir: str, work: Path, seed: int, checkpoint: str | None) -> dict:
    """Train ``audio-cpu`` with ``train.seed=seed`` (unless ``checkpoint``) and measure it; one JSON-able row."""

    from musicgan import audio_metrics as AM
    from musicgan.audio_model import NoteRequest, generate_grid, generate_mels
    from musicgan.checkpoint import find_latest, load_generator
    from musicgan.data.audio import GRIFFIN_LIM_ITERS, mel_to_audio
    from musicgan.data.shards import ShardReader
    from musicgan.model import build_for_data
    from musicgan.render import feature_config

    train_s = None
    if checkpoint is None:
        from musicgan.presets import load_preset
        from musicgan.train import fit

        steps = args.steps or load_preset("audio-cpu").train.total_steps
        cfg = load_preset("audio-cpu", [f"train.total_steps={steps}", "train.num_workers=1", f"train.seed={seed}",
                                        f"train.checkpoint_every_steps={steps}",
                                        f"train.eval_every_steps={steps}", *args.set])
        t0 = time.time()
        result = fit(cfg, data_dir, str(work / f"run-seed{seed}"))
        train_s = time.time() - t0
        if result.error:
            raise SystemExit(f"training failed: {result.error}")
        checkpoint = str(work / f"run-seed{seed}")
    path = find_latest(checkpoint)
    g, cfg, data, meta = load_generator(path)
    fc = feature_config(data)
    real = ShardReader(data_dir, split=None).arrays()
    pitch_range = (min(data["pitches"]), max(data["pitches"]))
    print(f"model: {path} (step {meta['step']}); data: {data_dir} ({len(real['x'])} clips)"
          + (f"; trained here in {train_s / 60:.1f} min" if train_s else ""))

    # 2. pitch accuracy
    fake, cond = generate_grid(g, data, args.n, seed=0)
    target = np.asarray(data["pitches"])[cond[:, 0].numpy()]
    acc_gen, _ = AM.clip_pitch_accuracy(mel_to_audio(fake.numpy()[:, 0], fc), target, fc.sample_rate_hz, pitch_range)
    acc_real, _ = AM.clip_pitch_accuracy(mel_to_audio(real["x"][:, 0], fc), real["pitch"], fc.sample_rate_hz,
                                         pitch_range)
    acc_raw = float("nan")
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    folder = manifest.get("source_folder")
    if folder and (Path(folder) / "labels.csv").exists():
        import soundfile as sf

        rows = list(csv.DictReader((Path(folder) / "labels.csv").open()))
        audio = np.stack([sf.read(Path(folder) / r["file"], dtype="float32")[0] for r in rows])
        acc_raw, _ = AM.clip_pitch_accuracy(audio, np.array([int(r["pitch"]) for r in rows]), fc.sample_rate_hz,
                                            pitch_range)
    print(f"pitch accuracy: generated {acc_gen:.3f}, training clips via mel+Griffin-Lim {acc_real:.3f} "
          f"(ratio {acc_gen / acc_real:.3f}; target >= 0.9), rendered audio itself {acc_raw:.3f}")

    # 3. speed, batch of 16
    reqs = [NoteRequest(1, seed=k, pitch=k % len(data["pitches"]), instrument=k % len(data["instruments"]))
            for k in range(16)]

    def ours():
        mels = torch.cat(generate_mels(g, reqs)).numpy()[:, 0]
        return mel_to_audio(mels, fc)

    def librosa_path():
        import librosa

        mels = torch.cat(generate_mels(g, reqs)).numpy()[:, 0]
        return [librosa.feature.inverse.mel_to_audio(librosa.db_to_power(m), sr=fc.sample_rate_hz, n_fft=fc.n_fft,
                                                     hop_length=fc.hop_length, n_iter=GRIFFIN_LIM_ITERS) for m in mels]

    audio_s = 16 * fc.clip_seconds
    t_ours, t_librosa = timed(ours), timed(librosa_path, repeats=3)
    forward_s = timed(lambda: generate_mels(g, reqs))
    rt, rt_librosa = audio_s / t_ours, audio_s / t_librosa
    print(f"speed (batch 16, {GRIFFIN_LIM_ITERS} Griffin-Lim iterations): {t_ours * 1000:.0f} ms = {rt:.0f}x real time "
          f"(generator forward {forward_s * 1000:.0f} ms); librosa's mel_to_audio clip by clip: "
          f"{t_librosa * 1000:.0f} ms = {rt_librosa:.1f}x (ours x{t_librosa / t_ours:.1f} faster); target >= 100x")

    # 4. Frechet distance vs an untrained generator
    torch.manual_seed(cfg.train.seed)
    untrained, _ = build_for_data(cfg.model, data)
    fd = AM.mel_fd(fake.numpy(), real["x"])
    fd0 = AM.mel_fd(generate_grid(untrained, data, args.n, seed=0)[0].numpy(), real["x"])
    div = AM.diversity_ratio(fake.numpy(), real["x"])
    print(f"Frechet mel-statistics distance: {fd:.1f} vs untrained {fd0:.1f} (ratio {fd / fd0:.3f}; target <= 0.25); "
          f"diversity {div:.2f}")
    return {"seed": seed, "checkpoint": str(path), "step": meta["step"],
            "train_minutes": round(train_s / 60, 2) if train_s else None,
            "pitch_accuracy": round(acc_gen, 4), "pitch_accuracy_training": round(acc_real, 4),
            "pitch_accuracy_rendered": round(acc_raw, 4), "pitch_ratio": round(acc_gen / acc_real, 4),
            "realtime_factor_batch16": round(rt, 1), "realtime_factor_librosa": round(rt_librosa, 1),
            "fd": round(fd, 2), "fd_untrained": round(fd0, 2), "fd_ratio": round(fd / fd0, 4), "diversity": round(div, 3)}


# figure -> (target, higher is better)
TARGETS = {"pitch_ratio": (0.9, True), "realtime_factor_batch16": (100.0, True), "fd_ratio": (0.25, False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a trained audio run or checkpoint (default: train one per seed)")
    ap.add_argument("--data", default=None, help="the notes build (default: build it into a temp folder)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps when training here (default: the audio-cpu preset's, 900)")
    ap.add_argument("--n", type=int, default=256, help="generated clips for pitch accuracy and FD (default 256)")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, one run each (default 0,1,2; one run with --checkpoint)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override on top of the audio-cpu preset when training here (repeatable), "
                         "e.g. --set loss.aux_weight=2")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from musicgan.data.audio import GRIFFIN_LIM_ITERS, synth_backend

    work = Path(tempfile.mkdtemp(prefix="audio-bench-"))
    data_dir = args.data or build_notes(str(work / "notes")).out
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    seeds = [0] if args.checkpoint else [int(x) for x in args.seeds.split(",") if x.strip()]
    rows = [measure(args, data_dir, work, seed, args.checkpoint) for seed in seeds]
    line = {"benchmark": "audio_quality", "synth": manifest.get("source_id", synth_backend()), "n": args.n,
            "seeds": seeds, "griffin_lim_iters": GRIFFIN_LIM_ITERS, "runs": rows}
    print(f"\n{len(rows)} run(s), data {line['synth']}:")
    for key, (target, higher) in TARGETS.items():
        values = [r[key] for r in rows]
        med, worst = statistics.median(values), (min(values) if higher else max(values))
        met = med >= target if higher else med <= target
        print(f"  {key:<24} median {med:.3f}  worst {worst:.3f}  runs {values}  target {'>=' if higher else '<='} "
              f"{target}: {'met' if met else 'missed'}")
        line.update({key: med, f"{key}_worst": worst, f"{key}_runs": values, f"{key}_target": target,
                     f"{key}_met": met})
    print(json.dumps(line))


if __name__ == "__main__":
    main()
