"""``musicgan evaluate``: a checkpoint's generated phrases against the held-out data, as a table and JSON."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import torch

from musicgan import metrics as M
from musicgan.checkpoint import CheckpointError, find_latest, load_generator
from musicgan.gan import generate
from musicgan.model import build_models

# The quality bar of the training issue: relative tolerance per metric, or a bound.
TARGETS = {"QN": 0.15, "UPC": 0.15, "EB": 0.15, "polyphony": 0.15, "in_scale": 0.15, "TD": 0.15}
# Rates in [0, 1] also pass within this absolute band: Bach's empty-bar rate is about 0.0003, and
# 15% of that (0.00005) would ask a generator for an exact zero-or-nothing match.
RATES, RATE_ABS_TOL = ("QN", "EB", "polyphony", "in_scale"), 0.01
FMD_RATIO_MAX, DIVERSITY_MIN, COPIES_MAX = 0.25, 0.8, 0.01


def evaluate(checkpoint: str, data_dir: str, n: int = 1000, seed: int = 0, json_path: str | None = None) -> dict:
    from musicgan.data.shards import ShardReader, load_manifest

    path = find_latest(checkpoint)
    out = report_path(path, json_path)  # before the work: a refusal costs nothing
    g, cfg, data, meta = load_generator(path)
    manifest = load_manifest(data_dir)
    if manifest["feature_hash"] != data["feature_hash"]:
        raise CheckpointError(f"{path} was trained on features {data['feature_hash']}, but {data_dir} has "
                              f"{manifest['feature_hash']}: evaluate against the data it was trained on")
    spb, low, names = data["steps_per_bar"], data["pitch_low"], data["track_names"]
    val = ShardReader(data_dir, split="val").arrays(max_rows=n)["x"] > 0
    train = ShardReader(data_dir, split="train").arrays()["x"] > 0
    generated = generate(g, n, seed=seed).numpy()
    torch.manual_seed(cfg.train.seed)
    untrained_g, _ = build_models(cfg.model, data["example_shape"], data["bars"], len(data["labels"]))
    untrained = generate(untrained_g, n, seed=seed).numpy()

    res = M.compare(generated, val, train, spb, low, names, untrained=untrained)
    res["training_set"] = M.phrase_metrics(train[:n], spb, low, names)
    res["FMD_ratio"] = res["FMD"] / res["FMD_untrained"] if res["FMD_untrained"] else None
    checks = {}
    for k, tol in TARGETS.items():
        real, gen = res["real"][k], res["generated"][k]
        rel = abs(gen - real) / abs(real) if real else (0.0 if gen == 0 else float("inf"))
        ok = rel <= tol or (k in RATES and abs(gen - real) <= RATE_ABS_TOL)
        target = f"within {tol:.0%}" + (f" or {RATE_ABS_TOL} absolute" if k in RATES else "")
        checks[k] = {"real": real, "generated": gen, "relative_difference": rel, "target": target, "ok": ok}
    checks.update(_distribution_checks(res))
    checks["copies"] = {"value": res["copies"], "target": f"< {COPIES_MAX:.0%}", "ok": res["copies"] < COPIES_MAX}
    report = {"checkpoint": str(path), "step": meta["step"], "data": str(data_dir), "n": n, "seed": seed,
              "grid": f"{spb} steps per bar; a qualified note lasts >= {M.MIN_NOTE_STEPS} steps (an eighth)",
              "metrics": res, "checks": checks, "passed": all(c["ok"] for c in checks.values())}
    return _write_report(report, out)


def _distribution_checks(res: dict) -> dict:
    """The targets both model families share: FMD against the untrained generator, and diversity."""
    return {"FMD_ratio": {"value": res["FMD_ratio"], "target": f"<= {FMD_RATIO_MAX}",
                          "ok": res["FMD_ratio"] is not None and res["FMD_ratio"] <= FMD_RATIO_MAX},
            "diversity": {"value": res["diversity"], "target": f">= {DIVERSITY_MIN}",
                          "ok": res["diversity"] >= DIVERSITY_MIN}}


def report_path(checkpoint: Path, json_path: str | None) -> Path:
    """Where the JSON report goes: ``json_path``, else ``evaluation-CHECKPOINT.json`` beside the checkpoint
    (in a run folder: next to its ``checkpoint_*`` folders). Never inside a checkpoint: the registry
    promises its versions never change, and a run's checkpoints are what a version is copied from."""
    checkpoint = Path(checkpoint).resolve()
    if json_path:
        out = Path(json_path).resolve()
    elif (checkpoint.parent / "model.json").exists():
        raise CheckpointError(f"{checkpoint} is a registry version, which never changes: give --json PATH "
                              "for the report")
    else:
        out = checkpoint.parent / f"evaluation-{checkpoint.name}.json"
    if out.is_relative_to(checkpoint):
        raise CheckpointError(f"{out} is inside the checkpoint {checkpoint}; evaluate never writes into a "
                              "checkpoint: give --json a path outside it")
    return out


def _write_report(report: dict, out: Path) -> dict:
    """Write the report as JSON at ``out`` (whole or not at all) and note where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(report, indent=2, default=float))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    report["json_path"] = str(out)
    return report


def table_text(report: dict) -> str:
    m, checks = report["metrics"], report["checks"]
    lines = [f"evaluate: {report['checkpoint']} (step {report['step']}), {report['n']} generated phrases vs held-out data",
             f"  grid: {report['grid']}",
             f"  {'metric':<12}{'held-out':>10}{'generated':>11}{'training':>10}{'rel.diff':>10}  target",]
    for k in ("QN", "UPC", "EB", "polyphony", "in_scale", "TD", "pitch_range"):
        c = checks.get(k)
        rel = f"{c['relative_difference']:.1%}" if c and np.isfinite(c["relative_difference"]) else "-"
        mark = ("ok" if c["ok"] else "MISS") + f"  {c['target']}" if c else ""
        lines.append(f"  {k:<12}{m['real'][k]:>10.3f}{m['generated'][k]:>11.3f}{m['training_set'][k]:>10.3f}"
                     f"{rel:>10}  {mark}")
    for k, label in (("FMD_ratio", "FMD / untrained"), ("diversity", "diversity"), ("copies", "copies")):
        c = checks[k]
        v = c["value"]
        lines.append(f"  {label:<22}{(f'{v:.3f}' if v is not None else '-'):>11}{'':>20}  "
                     f"{'ok' if c['ok'] else 'MISS'}  {c['target']}")
    lines.append(f"  FMD {m['FMD']:.3f}, untrained {m['FMD_untrained']:.3f}")
    lines.append(f"  all targets met: {'yes' if report['passed'] else 'no'}    JSON: {report['json_path']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# audio (model.family "spectrogram")

PITCH_RATIO_MIN = 0.9  # generated pitch accuracy / the training clips' own (issue 7's target)


class AudioEvaluator:
    """Generated single-note clips against the data: Fréchet mel-statistics distance, pitch accuracy, diversity.

    The clips are spread over the whole pitch x instrument grid. Pitch accuracy goes through the
    same path a listener's audio does (mel -> Griffin-Lim -> pYIN); the training clips' accuracy
    through that same path is the ceiling (``pitch_accuracy_real``), computed once.
    """

    def __init__(self, data_dir: str, data: dict, n_samples: int, max_real: int = 1000, pitch_clips: int = 64):
        from musicgan.data.shards import ShardReader

        self.data, self.n, self.pitch_clips = data, n_samples, pitch_clips
        real = ShardReader(data_dir, split=None).arrays(max_rows=max_real)
        self.real = real["x"]
        from musicgan.render import feature_config

        self.fc = feature_config(data)
        self.pitch_range = (min(data["pitches"]), max(data["pitches"])) if data.get("pitches") else None
        self.real_pitch_accuracy = float("nan")
        if self.pitch_range:
            pick = np.random.default_rng(0).permutation(len(self.real))[:pitch_clips]
            self.real_pitch_accuracy = self._pitch_accuracy(self.real[pick], real["pitch"][pick])

    def _pitch_accuracy(self, mels: np.ndarray, target_midi: np.ndarray) -> float:
        from musicgan.audio_metrics import clip_pitch_accuracy
        from musicgan.data.audio import mel_to_audio

        audio = mel_to_audio(mels[:, 0], self.fc)
        return clip_pitch_accuracy(audio, target_midi, self.fc.sample_rate_hz, self.pitch_range)[0]

    def __call__(self, g) -> tuple[dict[str, float], np.ndarray]:
        from musicgan import audio_metrics as AM
        from musicgan.audio_model import generate_grid

        fake, cond = generate_grid(g, self.data, self.n, seed=1234)
        fake = fake.numpy()
        out = {"FMD": AM.mel_fd(fake, self.real), "diversity": AM.diversity_ratio(fake, self.real)}
        if self.pitch_range:
            k = min(self.pitch_clips, len(fake))
            target = np.asarray(self.data["pitches"])[cond[:k, 0].numpy()]
            out["pitch_accuracy"] = self._pitch_accuracy(fake[:k], target)
            out["pitch_accuracy_real"] = self.real_pitch_accuracy
            out["pitch_accuracy_ratio"] = (out["pitch_accuracy"] / self.real_pitch_accuracy
                                           if self.real_pitch_accuracy else float("nan"))
        return out, fake


def evaluate_audio(checkpoint: str, data_dir: str, n: int = 256, seed: int = 0, json_path: str | None = None) -> dict:
    """``musicgan evaluate`` for a spectrogram checkpoint: the trained generator and an untrained one."""
    from musicgan.data.shards import load_manifest
    from musicgan.model import build_for_data

    path = find_latest(checkpoint)
    out = report_path(path, json_path)
    g, cfg, data, meta = load_generator(path)
    if load_manifest(data_dir)["feature_hash"] != data["feature_hash"]:
        raise CheckpointError(f"{path} was trained on features {data['feature_hash']}, but {data_dir} differs: "
                              "evaluate against the data it was trained on")
    ev = AudioEvaluator(data_dir, data, n)
    res, _ = ev(g)
    torch.manual_seed(cfg.train.seed)
    untrained, _ = build_for_data(cfg.model, data)
    res_untrained, _ = ev(untrained)
    res["FMD_untrained"] = res_untrained["FMD"]
    res["FMD_ratio"] = res["FMD"] / res_untrained["FMD"] if res_untrained["FMD"] else None
    res["pitch_accuracy_untrained"] = res_untrained.get("pitch_accuracy")
    checks = _distribution_checks(res)
    if "pitch_accuracy_ratio" in res:
        checks["pitch_accuracy_ratio"] = {"value": res["pitch_accuracy_ratio"], "target": f">= {PITCH_RATIO_MIN}",
                                          "ok": bool(res["pitch_accuracy_ratio"] >= PITCH_RATIO_MIN)}
    report = {"checkpoint": str(path), "step": meta["step"], "data": str(data_dir), "n": n, "seed": seed,
              "family": "spectrogram", "metrics": res, "checks": checks,
              "passed": all(c["ok"] for c in checks.values())}
    return _write_report(report, out)


def audio_table_text(report: dict) -> str:
    m, checks = report["metrics"], report["checks"]

    def f(v):
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"

    lines = [f"evaluate: {report['checkpoint']} (step {report['step']}), {report['n']} generated clips over the "
             "pitch x instrument grid",
             f"  pitch accuracy   generated {f(m.get('pitch_accuracy'))}   training clips {f(m.get('pitch_accuracy_real'))}"
             f"   untrained {f(m.get('pitch_accuracy_untrained'))}   (pYIN, within 0.5 semitone, after Griffin-Lim)",
             f"  FMD (mel stats)  {f(m['FMD'])}   untrained {f(m['FMD_untrained'])}"]
    labels = {"pitch_accuracy_ratio": "pitch accuracy / training", "FMD_ratio": "FMD / untrained",
              "diversity": "diversity"}
    for k, c in checks.items():
        lines.append(f"  {labels[k]:<26}{f(c['value']):>8}  {'ok' if c['ok'] else 'MISS'}  {c['target']}")
    lines.append(f"  all targets met: {'yes' if report['passed'] else 'no'}    JSON: {report['json_path']}")
    return "\n".join(lines)
