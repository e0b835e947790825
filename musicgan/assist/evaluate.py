"""``musicgan evaluate --task harmonize|continue|long|all``: the assistant's tasks on held-out chorales.

Every figure is printed beside Bach's own, measured the same way on the held-out (val) phrases, and
beside two baselines from the same run:

- **clamp**: the same checkpoint with nothing known (today's unconditional generation), the given
  voice or bars pasted over its own: what conditioning adds;
- **random**: random in-key notes, one per beat, in each missing voice
  (:func:`musicgan.assist.metrics.random_baseline`).

Tasks (measures in :mod:`musicgan.assist.metrics` and :mod:`musicgan.metrics`):

- **harmonize**: each held-out phrase's soprano given; A, T, B generated. Soprano kept, chord agreement
  with Bach's own chords, parallels / crossing / spacing against Bach's rates, notes outside each
  voice's range in the build, the evaluate table's measures and FMD ratio of the completed phrases
  (against an untrained generator's harmonizations of the same melodies), C2ST, and the spread among
  harmonizations of one melody over seeds, beside the spread between different real phrases.
- **continue**: bars 1-2 given; bars 3-4 generated. Key agreement between prompt and continuation
  (best-fit diatonic key) against the rate between the two halves of real phrases; seam smoothness
  (the mean voice leap across the seam over the mean leap elsewhere; Bach about 1); FMD.
- **long**: 32-bar pieces written phrase by phrase (:mod:`musicgan.assist.fill`), against today's
  side-by-side phrases (the same checkpoint, nothing known, each phrase sharing the voices' latents)
  and Bach's chorales rebuilt from consecutive held-out phrases: key changes between consecutive
  4-bar windows, and seam smoothness at every boundary where one window's writing meets the next
  (every 2 bars from bar 4; side by side: every 4 bars; Bach: every 4 bars).
- **unconditional**: the evaluate table on the same checkpoint with nothing known (``all`` only).

The key of a 4-bar window is noisy (Bach's own change between consecutive windows about a quarter
of the time on this measure), so key changes are read against Bach's rate, never alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from musicgan import metrics as M
from musicgan.assist import metrics as A
from musicgan.assist.fill import OVERLAP_BARS, fill_many, long_job
from musicgan.checkpoint import CheckpointError, find_latest, load_generator
from musicgan.evaluate import Reference, _write_report, judge, report_path
from musicgan.gan import Request, generate_many
from musicgan.model import build_models

TASKS = ("harmonize", "continue", "long")
SPREAD_SEEDS = 3
LONG_BARS, LONG_PIECES = 32, 16
# targets (issue 14)
CHORD_VS_CLAMP_MIN = 1.5
VOICE_TIMES_BACH = 2.0
FMD_RATIO_MAX = 0.25
KEY_AGREEMENT_VS_BACH_MIN = 0.9
SEAM_BAND = (0.8, 1.25)
KEY_CHANGES_VS_BACH_MAX = 1.5
C2ST_MAX = 0.85


def _val_with_starts(data_dir: str, max_rows: int | None):
    """The val split's phrases, their source files and start bars (for rebuilding whole chorales)."""
    from musicgan.data.shards import ShardReader, decode_x

    reader = ShardReader(data_dir, split="val")
    xs, sources, starts = [], [], []
    for table in reader.tables():
        xs.append(decode_x(table.column("x").to_pylist(), reader.kind, reader.shape))
        sources.extend(table.column("source").to_pylist())
        starts.append(table.column("start").to_numpy())
    x = np.concatenate(xs) > 0
    order = np.lexsort((np.concatenate(starts), np.asarray(sources)))
    everything = {"x": x[order], "source": np.asarray(sources)[order], "start": np.concatenate(starts)[order]}
    pick = np.sort(np.random.default_rng(0).permutation(len(x))[:max_rows]) if max_rows else slice(None)
    return everything, {k: v[pick] for k, v in everything.items()}


def _complete(g, x: np.ndarray, known: np.ndarray, seed: int) -> np.ndarray:
    """One generator completion of each phrase of ``x`` with ``known [N, T, S]`` given."""
    req = Request(len(x), seed, context=torch.from_numpy(x), mask=torch.from_numpy(known))
    return generate_many(g, [req])[0].numpy()


def _unconditional(g, n: int, seed: int) -> np.ndarray:
    return generate_many(g, [Request(n, seed)])[0].numpy()


def _voice_rates(rolls: np.ndarray, spb: int) -> dict[str, float]:
    return {"parallels_per_100": M.parallel_perfect_per_100(rolls, spb), "crossing": M.voice_crossing_rate(rolls, spb),
            "spacing": M.upper_spacing_rate(rolls, spb)}


def _ratio(a: float, b: float) -> float:
    return a / b if b else (1.0 if a == 0 else float("inf"))


def _target(value, ok: bool, target: str, **extra) -> dict:
    return {"value": value, "target": target, "met": bool(ok), **extra}


class TaskEvaluator:
    """A checkpoint, its held-out data and the references computed once; one method per task."""

    def __init__(self, checkpoint: str, data_dir: str, n: int = 512, seed: int = 0):
        from musicgan.data.shards import ShardReader, load_manifest
        from musicgan.families.pianoroll import voice_ranges

        self.path = find_latest(checkpoint)
        self.g, self.cfg, self.data, self.meta = load_generator(self.path)
        if not getattr(self.g, "masked", False):
            raise CheckpointError(f"{self.path} holds an unconditional model (model.masked is false); the "
                                  "assistant's tasks need a masked one: train with --preset cpu-masked")
        manifest = load_manifest(data_dir)
        if manifest["feature_hash"] != self.data["feature_hash"]:
            raise CheckpointError(f"{self.path} was trained on features {self.data['feature_hash']}, but "
                                  f"{data_dir} has {manifest['feature_hash']}: evaluate against its own data")
        self.spb, self.low, self.names = self.data["steps_per_bar"], self.data["pitch_low"], self.data["track_names"]
        self.seed = seed
        self.all_val, self.val = _val_with_starts(data_dir, n)
        self.x = self.val["x"]
        train = ShardReader(data_dir, split="train").arrays()
        self.ref = Reference(self.x, train["x"] > 0, self.spb, self.low, self.names, len(self.x),
                             real_groups=self.val["source"], train_groups=train["source"], seed=seed)
        self.ranges = [(lo - self.low, hi - self.low) for lo, hi in voice_ranges(self.data)]
        torch.manual_seed(self.cfg.train.seed)
        self.untrained, _ = build_models(self.cfg.model, self.data["example_shape"], self.data["bars"],
                                         len(self.data["labels"]))
        self.bach_voice = _voice_rates(self.x, self.spb)

    def _measured(self, rolls: np.ndarray, untrained: np.ndarray) -> dict:
        res = self.ref.measure(rolls, untrained=untrained)
        checks = judge(res)
        return {"metrics": res, "checks": checks, "passed": all(c["ok"] for c in checks.values())}

    # --- harmonize -----------------------------------------------------------------------------
    def harmonize(self) -> dict:
        x, spb = self.x, self.spb
        known = np.zeros(x.shape[:3], bool)
        known[:, 0] = True
        ours = [_complete(self.g, x, known, self.seed + k) for k in range(SPREAD_SEEDS)]
        clamp = _unconditional(self.g, len(x), self.seed).copy()
        clamp[:, 0] = x[:, 0]
        rand = [A.random_baseline(x, known, spb, self.low, self.ranges, self.seed + k) for k in range(SPREAD_SEEDS)]
        untrained = _complete(self.untrained, x, known, self.seed)

        def figures(rolls):
            return {"chord_agreement": A.chord_agreement(rolls, x, spb, self.low), **_voice_rates(rolls, spb),
                    "out_of_range": A.out_of_range_rate(rolls, self.ranges)}

        out = {"ours": figures(ours[0]), "clamp": figures(clamp), "random": figures(rand[0]), "bach": figures(x)}
        out["ours"]["soprano_kept"] = float(np.mean([(o[:, 0] == x[:, 0]).all(axis=(1, 2)).mean() for o in ours]))
        out["ours"]["spread"] = A.spread(np.stack(ours), known)
        out["random"]["spread"] = A.spread(np.stack(rand), known)
        out["bach"]["spread"] = A.spread_reference(x, known, seed=self.seed)
        measured = self._measured(ours[0], untrained)
        out["evaluate"] = measured
        o, b = out["ours"], self.bach_voice
        chord_ratio = _ratio(o["chord_agreement"], out["clamp"]["chord_agreement"])
        fmd_ratio = measured["metrics"].get("FMD_ratio")
        c2st = (measured["metrics"].get("C2ST") or {}).get("accuracy")
        out["targets"] = {
            "harmonize_soprano_kept": _target(o["soprano_kept"], o["soprano_kept"] == 1.0, "= 1 (100%)"),
            "harmonize_chord_agreement_vs_clamp": _target(chord_ratio, chord_ratio >= CHORD_VS_CLAMP_MIN,
                                                          f">= {CHORD_VS_CLAMP_MIN}"),
            **{f"harmonize_{k}_vs_bach": _target(_ratio(o[k], b[k]), o[k] <= VOICE_TIMES_BACH * b[k],
                                                 f"<= {VOICE_TIMES_BACH:g}")
               for k in ("parallels_per_100", "crossing", "spacing")},
            "harmonize_FMD_ratio": _target(fmd_ratio, fmd_ratio is not None and fmd_ratio <= FMD_RATIO_MAX,
                                           f"<= {FMD_RATIO_MAX}"),
            "harmonize_C2ST": _target(c2st, c2st is not None and c2st <= C2ST_MAX, f"<= {C2ST_MAX}"),
        }
        return out

    # --- continue ------------------------------------------------------------------------------
    def continue_(self) -> dict:
        x, spb = self.x, self.spb
        seam = 2 * spb
        known = np.zeros(x.shape[:3], bool)
        known[:, :, :seam] = True
        ours = _complete(self.g, x, known, self.seed)
        clamp = _unconditional(self.g, len(x), self.seed).copy()
        clamp[:, :, :seam] = x[:, :, :seam]
        rand = A.random_baseline(x, known, spb, self.low, self.ranges, self.seed)
        untrained = _complete(self.untrained, x, known, self.seed)

        def figures(rolls):
            return {"key_agreement": A.halves_key_agreement(rolls, spb, self.low, split_bar=2),
                    "seam_smoothness": A.seam_smoothness(rolls, [seam]), "seam_leap": A.seam_leap(rolls, [seam]),
                    "inside_leap": A.inside_leap(rolls, [seam]), "FMD": self.ref.fmd(rolls)}

        out = {"ours": figures(ours), "clamp": figures(clamp), "random": figures(rand), "bach": figures(x)}
        out["ours"]["FMD_ratio"] = _ratio(out["ours"]["FMD"], self.ref.fmd(untrained))
        o = out["ours"]
        key_ratio = _ratio(o["key_agreement"], out["bach"]["key_agreement"])
        lo, hi = SEAM_BAND
        out["targets"] = {
            "continue_key_agreement_vs_bach": _target(key_ratio, key_ratio >= KEY_AGREEMENT_VS_BACH_MIN,
                                                      f">= {KEY_AGREEMENT_VS_BACH_MIN}"),
            "continue_seam_smoothness": _target(o["seam_smoothness"], lo <= o["seam_smoothness"] <= hi,
                                                f"within {lo}-{hi}"),
        }
        return out

    # --- long ----------------------------------------------------------------------------------
    def long(self, n_pieces: int | None = None, n_bars: int | None = None) -> dict:
        n_pieces, n_bars = n_pieces or LONG_PIECES, n_bars or LONG_BARS
        spb, t, p = self.spb, self.x.shape[1], self.x.shape[3]
        phrase = self.g.n_bars
        ours = fill_many(self.g, [long_job(n_bars, t, p, spb, n=n_pieces, seed=self.seed)])[0]
        k = n_bars // phrase
        side = generate_many(self.g, [Request(n_pieces * k, self.seed, phrases_per_sample=k)])[0].numpy()
        side = side.reshape(n_pieces, k, *side.shape[1:]).transpose(0, 2, 1, 3, 4).reshape(n_pieces, t, -1, p)
        bach = A.reassemble_pieces(self.all_val["x"], self.all_val["source"], self.all_val["start"], phrase)
        hop = phrase - OVERLAP_BARS
        our_seams = list(range(phrase * spb, n_bars * spb, hop * spb))
        side_seams = list(range(phrase * spb, n_bars * spb, phrase * spb))
        per_boundary = [A.seam_smoothness(ours, [s]) for s in our_seams]

        def figures(pieces, seams):
            return {"key_change_rate": A.key_change_rate(list(pieces), spb, self.low, window_bars=phrase),
                    "seam_smoothness": A.seam_smoothness(pieces, seams)}

        out = {"ours": figures(ours, our_seams), "side_by_side": figures(side, side_seams),
               "bach": {"key_change_rate": A.key_change_rate(bach, spb, self.low, window_bars=phrase),
                        "seam_smoothness": A.seam_smoothness(bach, [list(range(phrase * spb, b.shape[1], phrase * spb))
                                                                     for b in bach]),
                        "pieces": len(bach)}}
        out["ours"]["seam_smoothness_per_boundary"] = per_boundary
        out["ours"]["pieces"], out["ours"]["bars"] = n_pieces, n_bars
        o, s, b = out["ours"], out["side_by_side"], out["bach"]
        lo, hi = SEAM_BAND
        finite = [v for v in per_boundary if np.isfinite(v)]
        worst = max(finite, key=lambda v: abs(math.log(v)) if v > 0 else float("inf")) if finite else float("nan")

        def off(v):
            return abs(math.log(v / b["seam_smoothness"])) if v > 0 and b["seam_smoothness"] > 0 else float("inf")

        key_ratio = _ratio(o["key_change_rate"], b["key_change_rate"])
        out["targets"] = {
            "long_seam_smoothness": _target(o["seam_smoothness"], lo <= o["seam_smoothness"] <= hi,
                                            f"within {lo}-{hi}", worst_boundary=worst),
            "long_seam_every_boundary": _target(worst, bool(finite) and all(lo <= v <= hi for v in finite),
                                                f"every boundary within {lo}-{hi}"),
            "long_seam_closer_than_side_by_side": _target(off(o["seam_smoothness"]),
                                                          off(o["seam_smoothness"]) < off(s["seam_smoothness"]),
                                                          f"|log(ours / Bach)| < side by side's "
                                                          f"({off(s['seam_smoothness']):.3f})"),
            "long_key_changes_vs_bach": _target(key_ratio, key_ratio <= KEY_CHANGES_VS_BACH_MAX,
                                                f"<= {KEY_CHANGES_VS_BACH_MAX}"),
        }
        return out

    # --- unconditional -------------------------------------------------------------------------
    def unconditional(self) -> dict:
        n = len(self.x)
        out = self._measured(_unconditional(self.g, n, self.seed), _unconditional(self.untrained, n, self.seed))
        c2st = (out["metrics"].get("C2ST") or {}).get("accuracy")
        missed = [k for k, c in out["checks"].items() if not c["ok"]]
        out["targets"] = {
            "unconditional_C2ST": _target(c2st, c2st is not None and c2st <= C2ST_MAX, f"<= {C2ST_MAX}"),
            "unconditional_all_evaluate_targets": _target(len(missed), not missed, "0 evaluate targets missed",
                                                          missed=missed),
        }
        return out


def evaluate_tasks(checkpoint: str, data_dir: str, task: str = "all", n: int = 512, seed: int = 0,
                   json_path: str | None = None) -> dict:
    """Run the tasks (``harmonize``, ``continue``, ``long`` or ``all``, which adds the unconditional
    table) and write the report as JSON (``evaluation-tasks-CHECKPOINT.json`` beside the checkpoint
    unless ``json_path``)."""
    import time

    tasks = TASKS + ("unconditional",) if task == "all" else (task,)
    path = find_latest(checkpoint)
    out = report_path(path, json_path)
    if json_path is None:
        out = out.with_name(out.name.replace("evaluation-", "evaluation-tasks-"))
    ev = TaskEvaluator(checkpoint, data_dir, n=n, seed=seed)
    report = {"checkpoint": str(ev.path), "step": ev.meta["step"], "data": str(data_dir), "n": len(ev.x),
              "seed": seed, "tasks": {}, "seconds": {}}
    for name in tasks:
        t0 = time.time()
        report["tasks"][name] = getattr(ev, "continue_" if name == "continue" else name)()
        report["seconds"][name] = round(time.time() - t0, 1)
    report["targets"] = {k: v for r in report["tasks"].values() for k, v in r.get("targets", {}).items()}
    report["passed"] = all(t["met"] for t in report["targets"].values())
    return _write_report(report, out)


def _f(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.2%}" if pct else f"{v:.3f}"


def table_text(report: dict) -> str:
    """The report as ``musicgan evaluate --task`` prints it: each task's figures beside Bach's and the
    baselines', then every target met or missed."""
    lines = [f"evaluate --task: {report['checkpoint']} (step {report['step']}), {report['n']} held-out phrases"]
    pct = {"crossing", "spacing", "out_of_range", "soprano_kept"}
    for name, res in report["tasks"].items():
        if name == "unconditional":
            m = res["metrics"]
            lines.append(f"  unconditional: quality {m['quality']:.2f}, C2ST {_f((m.get('C2ST') or {}).get('accuracy'))}, "
                         f"FMD ratio {_f(m.get('FMD_ratio'))}; missed: "
                         + (", ".join(k for k, c in res["checks"].items() if not c["ok"]) or "none"))
            continue
        cols = [c for c in ("ours", "clamp", "side_by_side", "random", "bach") if c in res]
        lines.append(f"  {name:<12}" + "".join(f"{c:>14}" for c in cols))
        keys = [k for k in res["ours"] if not isinstance(res["ours"][k], list)]
        for k in keys:
            lines.append(f"    {k:<20}"[:22] + "".join(f"{_f(res[c].get(k), k in pct):>14}" for c in cols))
        if "evaluate" in res:
            m = res["evaluate"]["metrics"]
            lines.append(f"    evaluate table on the completed phrases: quality {m['quality']:.2f}, C2ST "
                         f"{_f((m.get('C2ST') or {}).get('accuracy'))}, FMD ratio {_f(m.get('FMD_ratio'))}")
    lines.append("  targets:")
    for k, t in report["targets"].items():
        lines.append(f"    {'met ' if t['met'] else 'MISS'}  {k:<42} {_f(t['value'])}  ({t['target']})")
    lines.append(f"  all met: {'yes' if report['passed'] else 'no'}    JSON: {report['json_path']}")
    return "\n".join(lines)
