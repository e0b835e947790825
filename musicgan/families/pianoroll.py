"""The multi-track pianoroll GAN (:mod:`musicgan.model`) on MIDI phrases: notes, voices, MIDI out."""

from __future__ import annotations

from musicgan.families import Family, lazy, register


def build(model_cfg, data: dict):
    from musicgan.model import build_models

    return build_models(model_cfg, data["example_shape"], data["bars"], len(data["labels"]))


def data_info(manifest: dict) -> dict:
    """Each voice's lowest and highest MIDI pitch in the build (``voice_ranges``): where a user's
    melody is transposed to before the assistant harmonizes it (:mod:`musicgan.assist.midi_in`)."""
    stats = manifest.get("track_stats") or {}
    ranges = [[stats.get(name, {}).get("pitch_min"), stats.get(name, {}).get("pitch_max")]
              for name in manifest["feature_config"]["track_names"]]
    return {"voice_ranges": ranges} if all(None not in r for r in ranges) else {}


def voice_ranges(data: dict) -> list[tuple[int, int]]:
    """Each voice's (lowest, highest) MIDI pitch: from the build, or the model's whole range for
    checkpoints from before builds recorded it."""
    fc = data["feature_config"]
    full = (fc["pitch_low"], fc["pitch_high"] - 1)
    return [tuple(r) for r in data.get("voice_ranges") or [full] * len(fc["track_names"])]


def batch_tensors(data: dict, device):
    """Rolls as float; the piece label as the condition when the data has more than one label."""
    conditional = len(data["labels"]) > 1

    def to_tensors(b: dict, rows: slice):
        return b["x"][rows].float(), (b["label"][rows] if conditional else None)

    return to_tensors


def evaluator(data_dir: str, data: dict, n_samples: int, fmd_untrained: float | None):
    from musicgan.train import Evaluator

    return Evaluator(data_dir, data, n_samples, fmd_untrained=fmd_untrained)


def eval_line(step: int, quality: dict) -> str:
    c2st = quality["C2ST"]
    return (f"[musicgan] eval @ {step}: quality {quality['quality']:.2f} ({quality['targets_missed']} "
            f"targets missed)  FMD {quality['FMD']:.3f}  C2ST {'-' if c2st is None else f'{c2st:.2f}'}  "
            f"diversity {quality['diversity']:.2f}  leap {quality['gen/leap_semitones']:.2f} "
            f"(real {quality['real/leap_semitones']:.2f})  range {quality['gen/pitch_range']:.1f} "
            f"(real {quality['real/pitch_range']:.1f})")


def untrained_fmd(g, n_samples: int, data: dict, data_dir: str) -> float:
    from musicgan import metrics as M
    from musicgan.gan import generate
    from musicgan.train import held_out

    fake = generate(g, n_samples, seed=M.EVAL_SEED).numpy()
    real = held_out(data_dir, 1000)["x"]  # as Evaluator's
    names = data["track_names"]  # a band's drums stay out of the pitch statistics
    return M.frechet_distance(M.statistics_vector(fake, data["steps_per_bar"], data["pitch_low"], names),
                              M.statistics_vector(real, data["steps_per_bar"], data["pitch_low"], names))


def write_run_samples(fake, data: dict, out, step: int) -> None:
    from musicgan.render import pianoroll_png, to_midi

    for i in range(min(4, len(fake))):
        to_midi(fake[i], data).write(str(out / f"sample_{i}.mid"))
    pianoroll_png(fake[:8], data, out / "pianoroll.png", title=f"step {step}")


def plot_run_metrics(rows: list, run_dir) -> None:
    from musicgan.render import metric_plot
    from musicgan.train import RATIO_KEYS

    metric_plot(rows, ["quality", "targets_missed", "FMD", "C2ST", "diversity", "copies", "gen/QN", "gen/UPC",
                       *(f"ratio/{k}" for k in RATIO_KEYS), "vertical_distance"], run_dir / "metrics.png",
                "metrics (ratio/*: generated / held-out)")


def generate_many(g, requests: list) -> list:
    from musicgan.gan import generate_many

    return generate_many(g, requests, return_exceptions=True)


PIANOROLL = register(Family(
    name="pianoroll", feature_kind="pianoroll", preset_hint="a pianoroll preset (cpu, gpu)",
    voice_measures=True, objective="quality",
    build=build, data_info=data_info, batch_tensors=batch_tensors,
    evaluator=evaluator, eval_line=eval_line, untrained_fmd=untrained_fmd,
    evaluate=lazy("musicgan.evaluate:evaluate"), table_text=lazy("musicgan.evaluate:table_text"),
    sample=lazy("musicgan.cli:sample_pianoroll"), write_run_samples=write_run_samples,
    plot_run_metrics=plot_run_metrics,
    default_format="midi", formats=("midi", "wav", "png", "json", "zip"),
    serving_fields=lazy("serving.model:pianoroll_fields"), check_request=lazy("serving.schema:check_pianoroll_fields"),
    render=lazy("serving.render:render"), request_cost=lazy("serving.app:pianoroll_cost"),
    make_request=lazy("serving.app:pianoroll_request"),
    serve_summary=lazy("musicgan.serve_cli:pianoroll_summary"),
    generate_many=generate_many, assistant=True,
))
