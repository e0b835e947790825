"""The pitch/instrument-conditioned spectrogram GAN (:mod:`musicgan.audio_model`) on mel clips of
audio: one note per clip, WAV out (Griffin-Lim)."""

from __future__ import annotations

from musicgan.families import Family, lazy, register


def build(model_cfg, data: dict):
    from musicgan.audio_model import build_spectrogram_models

    return build_spectrogram_models(model_cfg, data)


def data_info(manifest: dict) -> dict:
    """The conditions (pitches, instruments) and the dB scale the model works in."""
    stats = manifest.get("track_stats", {})
    return dict(pitches=manifest.get("pitches", []), instruments=manifest.get("instruments", []),
                db_mean=stats.get("mean_db", -50.0), db_std=stats.get("std_db", 25.0))


def batch_tensors(data: dict, device):
    """Normalised mels; the condition is (pitch index, instrument index), unlabelled (-1) as 0."""
    import torch

    from musicgan.audio_model import normalize

    pitch_index = torch.zeros(128, dtype=torch.long, device=device)  # MIDI pitch -> the model's pitch index
    for i, p in enumerate(data.get("pitches") or []):
        pitch_index[p] = i

    def to_tensors(b: dict, rows: slice):
        cond = torch.stack([pitch_index[b["pitch"][rows].clamp_min(0)], b["instrument"][rows].clamp_min(0)], 1)
        return normalize(b["x"][rows].float(), data), cond

    return to_tensors


def evaluator(data_dir: str, data: dict, n_samples: int, fmd_untrained: float | None):
    from musicgan.evaluate import AudioEvaluator

    return AudioEvaluator(data_dir, data, n_samples, pitch_clips=min(64, n_samples))


def eval_line(step: int, quality: dict) -> str:
    return (f"[musicgan] eval @ {step}: FMD {quality['FMD']:.3f}  diversity {quality['diversity']:.2f}  "
            f"pitch accuracy {quality.get('pitch_accuracy', float('nan')):.2f} "
            f"(training clips {quality.get('pitch_accuracy_real', float('nan')):.2f})")


def untrained_fmd(g, n_samples: int, data: dict, data_dir: str) -> float:
    from musicgan import audio_metrics as AM
    from musicgan.audio_model import generate_grid
    from musicgan.data.shards import ShardReader
    from musicgan.metrics import EVAL_SEED

    fake = generate_grid(g, data, n_samples, seed=EVAL_SEED)[0].numpy()
    return AM.mel_fd(fake, ShardReader(data_dir, split=None).arrays(max_rows=1000)["x"])


def evaluate(checkpoint: str, data_dir: str, n: int = 256, seed: int = 0, json_path: str | None = None) -> dict:
    """:func:`musicgan.evaluate.evaluate_audio` on at most 256 clips (pYIN on each is slow)."""
    from musicgan.evaluate import evaluate_audio

    return evaluate_audio(checkpoint, data_dir, n=min(n, 256), seed=seed, json_path=json_path)


def write_run_samples(fake, data: dict, out, step: int) -> None:
    from musicgan.render import write_audio_samples

    write_audio_samples(fake[:8], data, out, title=f"step {step}")


def plot_run_metrics(rows: list, run_dir) -> None:
    from musicgan.render import metric_plot

    metric_plot(rows, ["aux_real", "aux_fake"], run_dir / "classifier.png", "auxiliary classifier loss")
    metric_plot(rows, ["FMD", "diversity", "pitch_accuracy", "pitch_accuracy_real"], run_dir / "metrics.png",
                "metrics")


def generate_many(g, requests: list) -> list:
    from musicgan.audio_model import generate_mels

    return generate_mels(g, requests)


SPECTROGRAM = register(Family(
    name="spectrogram", feature_kind="mel", preset_hint="--preset audio-cpu",
    voice_measures=False, objective="FMD",
    build=build, data_info=data_info, batch_tensors=batch_tensors,
    evaluator=evaluator, eval_line=eval_line, untrained_fmd=untrained_fmd,
    evaluate=evaluate, table_text=lazy("musicgan.evaluate:audio_table_text"),
    sample=lazy("musicgan.cli:sample_audio"), write_run_samples=write_run_samples,
    plot_run_metrics=plot_run_metrics,
    default_format="wav", formats=("wav", "png", "json", "zip"),  # no notes to write as MIDI
    serving_fields=lazy("serving.model:audio_fields"), check_request=lazy("serving.schema:check_audio_fields"),
    render=lazy("serving.render:render_audio"), request_cost=lazy("serving.app:audio_cost"),
    make_request=lazy("serving.app:audio_request"),
    serve_summary=lazy("musicgan.serve_cli:audio_summary"),
    generate_many=generate_many,
))
