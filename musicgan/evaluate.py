"""``musicgan evaluate``: a checkpoint's generated phrases against the held-out data, as a table and JSON.

The targets (``checks`` in the report; ``passed`` when every one is met), all measured on generated
phrases against the held-out (val) phrases of the build, definitions in :mod:`musicgan.metrics` and
:mod:`musicgan.c2st`:

- **within 15%** of the held-out value: QN, UPC, EB, polyphony, in-scale, TD, the mean melodic leap
  within a voice and a voice's pitch range per phrase (the rates QN, EB, polyphony and in-scale also
  pass within 0.01 absolute);
- **at most 2x** the held-out rate: leaps over an octave, parallel fifths/octaves, adjacent-voice
  crossing, upper-voice spacing over an octave;
- **vertical intervals**: the interval-class distance to the held-out phrases at most 2x the training
  phrases' own distance to them (the data's floor);
- **C2ST**: a logistic classifier (features in :mod:`musicgan.c2st`, folds by source chorale) tells
  generated from held-out phrases at most 0.85 of the time (0.5 = it cannot tell);
- FMD at most 0.25 of an untrained generator's, diversity at least 0.8, copies under 1%.

The **quality objective** (:func:`quality_objective`; what ``musicgan tune`` ranks trials and promotes
by, lower is better) sums how far the phrases are from every target, in doublings::

    quality = log2(max(1, FMD / FMD_floor))  +  sum over the targets above of excess_t

- ``FMD_floor`` is FMD between as many training phrases as generated and the same held-out phrases:
  the data's own sampling noise (0.013 for 1,000 Bach phrases). The term replaces the FMD-vs-untrained
  target, which cannot tell a good model from a fair one.
- ``excess_t`` is 0 when target t is met, else how many doublings (log2) the measure lies beyond it.
  With ``g`` generated and ``r`` held-out: within a relative tolerance ``tol``,
  ``max(log2(g/r) - log2(1 + tol), log2(1 - tol) - log2(g/r))``; at most ``k`` times held-out,
  ``log2(g/r) - log2(k)``; vertical intervals, ``log2(d / (2 d_floor))``; C2ST, on the accuracy above
  chance, ``log2((acc - 0.5) / (0.85 - 0.5))``; diversity, ``log2(0.8 / diversity)``; copies,
  ``log2(copies / 1%)``. Ratios are smoothed, ``(g + e) / (r + e)`` with a small ``e`` per measure
  (:data:`SMOOTHING`), so a measure the held-out data never shows still has a finite ratio.
- Below the diversity target, each rare-event term (octave leaps, parallels, crossing, spacing) counts
  at least the diversity term: phrases that barely move show no rare events, and that is no evidence.
  Without this, an 8-trial search of 200-step trials ranked a near-collapsed trial (diversity 0.16,
  no crossing, spacing or octave leap at all) first.

So 0 means every target met with FMD at the floor. 1,000 of Bach's own training phrases, scored as
if generated, meet every target but copies (they are the training set: 6.6) with FMD at 0.9x the
floor; the same phrases with the alto moved up an octave score 15.3 (spacing 5.3, crossing 4.3, FMD
3.2, octave leaps 2.0, C2ST 0.5). By the issue-12 figures of the ``cpu`` demo model (1,300 steps), its
voice terms alone come to about 13 (octave leaps at 125x Bach's rate are 6). All terms weigh the
same; ``quality_terms`` in the report lists them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from musicgan import metrics as M
from musicgan.checkpoint import CheckpointError, find_latest, load_generator
from musicgan.gan import generate
from musicgan.model import build_models
from musicgan.storage import resolve

# The quality bar: relative tolerance per measure (today's table, then the voice measures).
TARGETS = {"QN": 0.15, "UPC": 0.15, "EB": 0.15, "polyphony": 0.15, "in_scale": 0.15, "TD": 0.15,
           "pitch_range": 0.15, "leap_semitones": 0.15}
# Rates in [0, 1] also pass within this absolute band: Bach's empty-bar rate is about 0.0003, and
# 15% of that (0.00005) would ask a generator for an exact zero-or-nothing match.
RATES, RATE_ABS_TOL = ("QN", "EB", "polyphony", "in_scale"), 0.01
# Rare events in Bach: at most this many times the held-out rate.
TIMES_HELD_OUT = {"octave_leaps": 2.0, "parallels_per_100": 2.0, "crossing": 2.0, "spacing": 2.0}
VERTICAL_FLOOR_TIMES = 2.0  # vertical-interval distance, over the training phrases' own
C2ST_MAX, C2ST_FOLDS, C2ST_CHANCE = 0.85, 5, 0.5
FMD_RATIO_MAX, DIVERSITY_MIN, COPIES_MAX = 0.25, 0.8, 0.01
# ``e`` in the objective's smoothed ratios (g + e) / (r + e): well below the held-out values
# (Bach: octave leaps 0.00066, spacing 0.004, crossing 0.008), so they barely move a ratio.
SMOOTHING = {"octave_leaps": 1e-4, "crossing": 1e-4, "spacing": 1e-4}
DEFAULT_SMOOTHING = 1e-3
VOICE_KEYS = ("leap_semitones", "octave_leaps", "parallels_per_100", "crossing", "spacing")


# ---------------------------------------------------------------------------------------------
# measuring: generated phrases against the held-out ones, with the training phrases' floors


def c2st(real, other, steps_per_bar: int, pitch_low: int, real_groups=None, other_groups=None, seed: int = 0) -> dict:
    """:func:`musicgan.c2st.c2st_accuracy` (logistic) with folds by source piece: up to 5 folds, fewer when
    the held-out phrases come from fewer pieces. ``accuracy`` is None (with ``skipped``, the reason) when
    there are too few pieces or phrases to hold any out."""
    from musicgan.c2st import c2st_accuracy

    pieces = len(np.unique(real_groups)) if real_groups is not None else C2ST_FOLDS
    folds = min(C2ST_FOLDS, pieces)
    if folds < 2:
        return {"accuracy": None, "skipped": f"the held-out phrases come from {pieces} piece(s); a C2ST by piece "
                                             "needs at least 2"}
    try:
        return c2st_accuracy(real, other, steps_per_bar, pitch_low, folds=folds, seed=seed, real_groups=real_groups,
                             generated_groups=other_groups)
    except ValueError as e:  # too few phrases, or too few pieces left after balancing the two sets
        return {"accuracy": None, "skipped": str(e)}


class Reference:
    """The held-out phrases and what generated phrases are measured against, computed once.

    ``train`` is the training set (for copies); a seeded sample of ``n_generated`` of its phrases
    gives each distribution measure its floor: FMD, vertical-interval distance and C2ST of training
    phrases against the held-out ones, at the same sample sizes as the generated phrases.
    ``real_groups``/``train_groups`` are the source pieces of the phrases (the shards' ``source``).
    """

    def __init__(self, real, train, steps_per_bar: int, pitch_low: int, track_names: list[str], n_generated: int,
                 real_groups=None, train_groups=None, seed: int = 0):
        self.real, self.train = M._bool(real), M._bool(train)
        self.spb, self.low, self.names, self.seed = steps_per_bar, pitch_low, list(track_names), seed
        self.real_groups = None if real_groups is None else np.asarray(real_groups)
        pick = np.sort(np.random.default_rng(seed).choice(len(self.train), min(n_generated, len(self.train)),
                                                          replace=False))
        sample = self.train[pick]
        sample_groups = None if train_groups is None else np.asarray(train_groups)[pick]
        self.real_metrics = self.set_metrics(self.real)
        self.training_metrics = self.set_metrics(sample) if len(sample) else {}
        self.real_stats = M.statistics_vector(self.real, steps_per_bar, pitch_low, self.names)
        self.real_hamming = M.mean_pairwise_hamming(self.real)  # M.diversity_ratio's denominator, once
        self.floors = {"FMD_floor": None, "vertical_distance_floor": None, "C2ST_floor": {"accuracy": None}}
        if len(sample) > 1:
            self.floors = {
                "FMD_floor": M.frechet_distance(M.statistics_vector(sample, steps_per_bar, pitch_low, self.names),
                                                self.real_stats),
                "vertical_distance_floor": M.vertical_interval_distance(sample, self.real, steps_per_bar, self.names),
                "C2ST_floor": c2st(self.real, sample, steps_per_bar, pitch_low, self.real_groups, sample_groups, seed)}

    def set_metrics(self, rolls) -> dict[str, float]:
        """Today's per-set metrics and the voice measures, one flat dict."""
        return M.phrase_metrics(rolls, self.spb, self.low, self.names) | M.voice_metrics(rolls, self.spb, self.names)

    def fmd(self, rolls) -> float:
        return M.frechet_distance(M.statistics_vector(rolls, self.spb, self.low, self.names), self.real_stats)

    def measure(self, generated, untrained=None) -> dict:
        """Everything :func:`target_checks` and :func:`quality_objective` read."""
        generated = M._bool(generated)
        res = {"generated": self.set_metrics(generated), "real": self.real_metrics,
               "training_set": self.training_metrics, "FMD": self.fmd(generated),
               "diversity": M.mean_pairwise_hamming(generated) / self.real_hamming if self.real_hamming > 0 else 0.0,
               "copies": M.copy_rate(generated, self.train) if len(self.train) else None,
               "vertical_distance": M.vertical_interval_distance(generated, self.real, self.spb, self.names),
               "C2ST": c2st(self.real, generated, self.spb, self.low, self.real_groups, None, self.seed), **self.floors}
        floor = res["FMD_floor"]
        res["FMD_floor_ratio"] = res["FMD"] / floor if floor else None
        if untrained is not None:
            res["FMD_untrained"] = self.fmd(untrained)
            res["FMD_ratio"] = res["FMD"] / res["FMD_untrained"] if res["FMD_untrained"] else None
        return res


# ---------------------------------------------------------------------------------------------
# judging: targets, and the objective a search optimises


def _log2_ratio(generated: float, real: float, key: str) -> float:
    e = SMOOTHING.get(key, DEFAULT_SMOOTHING)
    return math.log2((generated + e) / (real + e))


def within_check(key: str, real: float, generated: float, tol: float) -> dict:
    """Within ``tol`` of the held-out value (relative; the rates also within 0.01 absolute)."""
    rel = abs(generated - real) / abs(real) if real else (0.0 if generated == 0 else float("inf"))
    ok = bool(rel <= tol or (key in RATES and abs(generated - real) <= RATE_ABS_TOL))
    lr = _log2_ratio(generated, real, key)
    excess = 0.0 if ok else max(0.0, lr - math.log2(1 + tol), math.log2(1 - tol) - lr)
    target = f"within {tol:.0%}" + (f" or {RATE_ABS_TOL} absolute" if key in RATES else "")
    return {"real": real, "generated": generated, "relative_difference": rel, "target": target, "ok": ok,
            "excess": excess}


def times_check(key: str, real: float, generated: float, times: float) -> dict:
    """At most ``times`` the held-out rate."""
    ratio = generated / real if real else (1.0 if generated == 0 else float("inf"))
    ok = bool(generated <= times * real)
    excess = 0.0 if ok else max(0.0, _log2_ratio(generated, real, key) - math.log2(times))
    return {"real": real, "generated": generated, "ratio": ratio, "target": f"<= {times:g}x held-out", "ok": ok,
            "excess": excess}


def _bound_check(value, bound: float, upper: bool, target: str, excess) -> dict:
    if value is None:
        return {"value": None, "target": target, "ok": False, "excess": 0.0}
    ok = bool(value <= bound if upper else value >= bound)
    return {"value": value, "target": target, "ok": ok, "excess": 0.0 if ok else max(0.0, excess(value))}


def _distribution_checks(res: dict) -> dict:
    """The targets both model families share: FMD against the untrained generator, and diversity."""
    return {"FMD_ratio": {"value": res.get("FMD_ratio"), "target": f"<= {FMD_RATIO_MAX}",
                          "ok": res.get("FMD_ratio") is not None and res["FMD_ratio"] <= FMD_RATIO_MAX},
            "diversity": _bound_check(res["diversity"], DIVERSITY_MIN, False, f">= {DIVERSITY_MIN}",
                                      lambda v: math.log2(DIVERSITY_MIN / max(v, 1e-9)))}


def target_checks(res: dict) -> dict:
    """Every target of the evaluate table, from :meth:`Reference.measure`'s result; each check has
    ``ok`` and ``excess`` (doublings past the target, 0 when met)."""
    gen, real = res["generated"], res["real"]
    checks = {k: within_check(k, real[k], gen[k], tol) for k, tol in TARGETS.items()}
    checks.update({k: times_check(k, real[k], gen[k], times) for k, times in TIMES_HELD_OUT.items()})
    floor = res.get("vertical_distance_floor")
    if floor is not None:
        bound = VERTICAL_FLOOR_TIMES * floor
        checks["vertical_distance"] = _bound_check(
            res["vertical_distance"], bound, True, f"<= {VERTICAL_FLOOR_TIMES:g}x training ({bound:.3f})",
            lambda v: _log2_ratio(v, bound, "vertical_distance"))
        checks["vertical_distance"]["floor"] = floor
    acc = (res.get("C2ST") or {}).get("accuracy")
    checks["C2ST"] = _bound_check(acc, C2ST_MAX, True, f"<= {C2ST_MAX}" if acc is not None else
                                  f"<= {C2ST_MAX} (not computed: {(res.get('C2ST') or {}).get('skipped')})",
                                  lambda v: math.log2((v - C2ST_CHANCE) / (C2ST_MAX - C2ST_CHANCE)))
    checks["C2ST"]["floor"] = (res.get("C2ST_floor") or {}).get("accuracy")
    checks.update(_distribution_checks(res))
    if res.get("copies") is not None:
        checks["copies"] = _bound_check(res["copies"], COPIES_MAX, True, f"< {COPIES_MAX:.0%}",
                                        lambda v: math.log2(v / COPIES_MAX))
        checks["copies"]["ok"] = bool(res["copies"] < COPIES_MAX)
    return checks


def quality_objective(res: dict, checks: dict) -> tuple[float, dict[str, float]]:
    """The search objective (lower is better; see the module docstring) and its terms."""
    floor = res.get("FMD_floor")
    terms = {"FMD_floor": math.log2(max(1.0, res["FMD"] / floor)) if floor else 0.0}
    terms.update({k: c["excess"] for k, c in checks.items() if k != "FMD_ratio" and "excess" in c})
    # Rare events are only evidence when the phrases vary: a collapsing model shows none. Below the
    # diversity target, each rare-event term counts at least the diversity term's doublings.
    shortfall = terms.get("diversity", 0.0)
    for key in TIMES_HELD_OUT:
        if key in terms:
            terms[key] = max(terms[key], shortfall)
    return float(sum(terms.values())), terms


def judge(res: dict) -> dict:
    """Add ``quality``/``quality_terms`` to a measured result; returns the checks."""
    checks = target_checks(res)
    res["quality"], res["quality_terms"] = quality_objective(res, checks)
    return checks


# ---------------------------------------------------------------------------------------------
# the command


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
    val = ShardReader(data_dir, split="val").arrays(max_rows=n)
    train = ShardReader(data_dir, split="train").arrays()
    ref = Reference(val["x"] > 0, train["x"] > 0, spb, low, names, n, real_groups=val["source"],
                    train_groups=train["source"], seed=seed)
    generated = generate(g, n, seed=seed).numpy()
    torch.manual_seed(cfg.train.seed)
    untrained_g, _ = build_models(cfg.model, data["example_shape"], data["bars"], len(data["labels"]))
    untrained = generate(untrained_g, n, seed=seed).numpy()

    res = ref.measure(generated, untrained=untrained)
    checks = judge(res)
    report = {"checkpoint": str(path), "step": meta["step"], "data": str(data_dir), "n": n, "seed": seed,
              "grid": f"{spb} steps per bar; a qualified note lasts >= {M.MIN_NOTE_STEPS} steps (an eighth); "
                      "voice leading at quarter-note beats",
              "metrics": res, "checks": checks, "passed": all(c["ok"] for c in checks.values())}
    return _write_report(report, out)


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
    resolve(out).write_json_atomic(report, default=float)
    report["json_path"] = str(out)
    return report


LABELS = {"pitch_range": "range", "leap_semitones": "leap", "octave_leaps": "leaps>8ve",
          "parallels_per_100": "parallels", "crossing": "crossing", "spacing": "spacing"}
PERCENT = ("octave_leaps", "crossing", "spacing")  # shown as percentages
UNITS = {"pitch_range": "semitones per voice and phrase", "leap_semitones": "semitones, within a voice",
         "octave_leaps": "of leaps", "parallels_per_100": "per 100 voice-pair beat transitions",
         "crossing": "of adjacent-voice beats", "spacing": "of adjacent-voice beats, upper pairs > 8ve"}


def _value(k: str, v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.2%}" if k in PERCENT else f"{v:.3f}"


def table_text(report: dict) -> str:
    m, checks = report["metrics"], report["checks"]
    lines = [f"evaluate: {report['checkpoint']} (step {report['step']}), {report['n']} generated phrases vs held-out data",
             f"  grid: {report['grid']}",
             f"  {'metric':<12}{'held-out':>10}{'generated':>11}{'training':>10}{'off by':>9}  target"]
    keys = ["QN", "UPC", "EB", "polyphony", "in_scale", "TD", "pitch_range", "leap_semitones", *TIMES_HELD_OUT]
    for k in keys:
        c = checks.get(k)
        if c and "ratio" in c:
            diff = f"{c['ratio']:.2f}x" if np.isfinite(c["ratio"]) else "-"
        else:
            diff = f"{c['relative_difference']:.1%}" if c and np.isfinite(c["relative_difference"]) else "-"
        mark = ("ok" if c["ok"] else "MISS") + f"  {c['target']}" if c else ""
        unit = f"  ({UNITS[k]})" if k in UNITS else ""
        lines.append(f"  {LABELS.get(k, k):<12}{_value(k, m['real'][k]):>10}{_value(k, m['generated'][k]):>11}"
                     f"{_value(k, m['training_set'].get(k)):>10}{diff:>9}  {mark}{unit}")
    lines.append(f"  {'':<22}{'generated':>11}{'training':>10}")
    rows = [("vertical_distance", "vertical intervals", m.get("vertical_distance"), m.get("vertical_distance_floor"),
             "  (interval-class distance to held-out)"),
            ("C2ST", "C2ST accuracy", (m.get("C2ST") or {}).get("accuracy"),
             (m.get("C2ST_floor") or {}).get("accuracy"), "  (0.5 = cannot tell from held-out)"),
            ("FMD_ratio", "FMD / untrained", m.get("FMD_ratio"), None, ""),
            ("diversity", "diversity", m.get("diversity"), None, ""),
            ("copies", "copies", m.get("copies"), None, "")]
    for k, label, v, floor, note in rows:
        c = checks.get(k)
        if c is None:
            continue
        lines.append(f"  {label:<22}{_value(k, v):>11}{_value(k, floor):>10}{'':>9}  "
                     f"{'ok' if c['ok'] else 'MISS'}  {c['target']}{note}")
    floor = m.get("FMD_floor")
    lines.append(f"  FMD {m['FMD']:.3f}, untrained {m['FMD_untrained']:.3f}, training (the floor) "
                 + (f"{floor:.3f}: {m['FMD_floor_ratio']:.1f}x the floor" if floor else "-"))
    worst = sorted(((v, k) for k, v in m.get("quality_terms", {}).items() if v > 0), reverse=True)[:4]
    lines.append(f"  quality (the search objective; 0 = every target met, FMD at the floor) {m['quality']:.2f}"
                 + (": " + ", ".join(f"{k} {v:.2f}" for v, k in worst) if worst else ""))
    missed = [k for k, c in checks.items() if not c["ok"]]
    lines.append(f"  all targets met: {'yes' if report['passed'] else 'no, missed ' + ', '.join(missed)}"
                 f"    JSON: {report['json_path']}")
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

        fake, cond = generate_grid(g, self.data, self.n, seed=M.EVAL_SEED)
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
