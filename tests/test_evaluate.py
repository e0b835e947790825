"""The evaluate table's targets, the quality objective and the training-time measures, on hand-built
inputs whose answers are known (no Ray, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgan import evaluate as E

SPB, LOW, PITCHES = 16, 36, 48
BEAT = SPB // 4
REGISTERS = (67, 60, 53, 44)  # soprano, alto, tenor, bass (MIDI): never crossed, never over an octave apart
NAMES = ["soprano", "alto", "tenor", "bass"]
BACH = {"QN": 0.98, "UPC": 3.15, "EB": 0.0003, "polyphony": 0.999, "in_scale": 0.952, "TD": 0.882,
        "pitch_range": 10.05, "leap_semitones": 2.59, "octave_leaps": 0.00066, "parallels_per_100": 0.42,
        "crossing": 0.0081, "spacing": 0.004}


def chorales(n: int, seed: int, alto_up: bool = False) -> np.ndarray:
    """``[n, 4, 64, 48]``: each voice a walk of quarter notes by -2..+2 semitones within 2 of its register
    (no crossings, no wide spacing); ``alto_up`` moves the alto an octave up, above the soprano."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 4, 16 * BEAT, PITCHES), bool)
    for i in range(n):
        for t, start in enumerate(REGISTERS):
            pitch = start + rng.integers(-2, 3)
            for b in range(16):
                pitch = int(np.clip(pitch + rng.integers(-2, 3), start - 2, start + 2))
                out[i, t, b * BEAT : (b + 1) * BEAT, pitch + 12 * (alto_up and t == 1) - LOW] = True
    return out


def measured(generated: dict, fmd=0.013, floor=0.013, c2st=0.5, diversity=1.0, copies=0.0, vertical=0.03):
    """A result as Reference.measure gives it: held-out values BACH, ``generated`` over them."""
    return {"generated": BACH | generated, "real": dict(BACH), "training_set": dict(BACH), "FMD": fmd,
            "FMD_floor": floor, "FMD_floor_ratio": fmd / floor, "FMD_untrained": 10.0, "FMD_ratio": fmd / 10.0,
            "diversity": diversity, "copies": copies, "vertical_distance": vertical, "vertical_distance_floor": 0.033,
            "C2ST": {"accuracy": c2st}, "C2ST_floor": {"accuracy": 0.5}}


def test_within_target_is_relative_and_its_excess_counts_doublings_beyond_15_percent():
    near = E.within_check("leap_semitones", 2.59, 2.9, 0.15)
    assert near["ok"] and near["excess"] == 0.0 and near["relative_difference"] == pytest.approx(0.31 / 2.59)
    far = E.within_check("leap_semitones", 2.59, 6.0, 0.15)  # the demo model's 2.3x
    assert not far["ok"]
    assert far["excess"] == pytest.approx(math.log2(6.001 / 2.591) - math.log2(1.15))
    low = E.within_check("pitch_range", 10.0, 5.0, 0.15)  # half the range: one doubling, less the 15% band
    assert not low["ok"] and low["excess"] == pytest.approx(math.log2(0.85) - math.log2(5.001 / 10.001))
    rate = E.within_check("QN", 0.98, 0.975, 0.15)
    assert rate["ok"] and "0.01 absolute" in rate["target"]
    tiny = E.within_check("EB", 0.0003, 0.009, 0.15)  # 30x a tiny rate, but within 0.01 absolute
    assert tiny["ok"] and tiny["excess"] == 0.0


def test_rate_targets_allow_twice_the_held_out_rate():
    at_bound = E.times_check("crossing", 0.008, 0.016, 2.0)
    assert at_bound["ok"] and at_bound["ratio"] == pytest.approx(2.0) and at_bound["excess"] == 0.0
    demo = E.times_check("crossing", 0.008, 0.066, 2.0)  # the demo model's 8x
    assert not demo["ok"] and demo["excess"] == pytest.approx(math.log2(0.0661 / 0.0081) - 1)
    never = E.times_check("octave_leaps", 0.0, 0.0, 2.0)
    assert never["ok"] and never["ratio"] == 1.0
    some = E.times_check("octave_leaps", 0.0, 0.001, 2.0)
    assert not some["ok"] and some["ratio"] == math.inf and math.isfinite(some["excess"]) and some["excess"] > 0


def test_held_out_values_meet_every_target_and_score_zero():
    res = measured({})
    checks = E.judge(res)
    assert all(c["ok"] for c in checks.values()), {k: c for k, c in checks.items() if not c["ok"]}
    assert set(checks) >= {"leap_semitones", "pitch_range", "octave_leaps", "parallels_per_100", "crossing",
                           "spacing", "vertical_distance", "C2ST", "QN", "TD", "FMD_ratio", "diversity", "copies"}
    assert res["quality"] == 0.0 and set(res["quality_terms"]) >= {"FMD_floor", "C2ST", "crossing"}
    assert "FMD_ratio" not in res["quality_terms"]  # the FMD floor term replaces it


def test_quality_objective_sums_the_doublings_past_each_target():
    # the demo model: FMD 40x the floor, leap 2.3x, range 2x, octave leaps 125x, parallels 3.7x,
    # crossing 8x, spacing 10x, and a classifier that tells every phrase
    bad = {"leap_semitones": 2.3 * 2.59, "pitch_range": 20.1, "octave_leaps": 125 * 0.00066,
           "parallels_per_100": 3.7 * 0.42, "crossing": 8 * 0.0081, "spacing": 10 * 0.004}
    res = measured(bad, fmd=40 * 0.013, c2st=1.0)
    checks = E.judge(res)
    missed = {k for k, c in checks.items() if not c["ok"]}
    assert missed == set(bad) | {"C2ST"}
    terms = res["quality_terms"]
    assert terms["FMD_floor"] == pytest.approx(math.log2(40))
    assert terms["C2ST"] == pytest.approx(math.log2(0.5 / 0.35))
    assert terms["crossing"] == pytest.approx(math.log2((0.0648 + 1e-4) / (0.0081 + 1e-4)) - 1)
    assert terms["octave_leaps"] == pytest.approx(math.log2((0.0825 + 1e-4) / (0.00066 + 1e-4)) - 1)
    assert terms["QN"] == 0.0 and terms["diversity"] == 0.0
    assert res["quality"] == pytest.approx(sum(terms.values())) and 17 < res["quality"] < 20
    # an FMD below its floor is no better than at it; a better model scores lower
    better = measured({"crossing": 3 * 0.0081}, fmd=0.005)
    E.judge(better)
    assert better["quality_terms"]["FMD_floor"] == 0.0 and 0 < better["quality"] < res["quality"]


def test_collapse_and_copies_count_against_the_objective():
    collapsed = measured({}, diversity=0.2, copies=0.04)
    checks = E.judge(collapsed)
    assert not checks["diversity"]["ok"] and not checks["copies"]["ok"]
    assert collapsed["quality_terms"]["diversity"] == pytest.approx(2.0)  # 0.8 / 0.2: two doublings
    assert collapsed["quality_terms"]["copies"] == pytest.approx(2.0)  # 4% of a 1% bound
    # no rare events because nothing moves is no evidence: each rare-event term counts the shortfall
    for key in ("octave_leaps", "parallels_per_100", "crossing", "spacing"):
        assert checks[key]["ok"] and collapsed["quality_terms"][key] == pytest.approx(2.0)
    assert collapsed["quality"] == pytest.approx(12.0)
    # a rare-event term already past the shortfall keeps its own value
    crossing = measured({"crossing": 64 * 0.0081}, diversity=0.4)
    E.judge(crossing)
    assert crossing["quality_terms"]["diversity"] == pytest.approx(1.0)
    assert crossing["quality_terms"]["crossing"] == pytest.approx(math.log2((64 * 0.0081 + 1e-4) / (0.0081 + 1e-4)) - 1)
    assert crossing["quality_terms"]["spacing"] == pytest.approx(1.0)


def test_a_c2st_that_could_not_run_is_a_miss_that_says_why():
    res = measured({})
    res["C2ST"] = {"accuracy": None, "skipped": "the held-out phrases come from 1 piece(s)"}
    checks = E.judge(res)
    assert not checks["C2ST"]["ok"]
    assert "not computed: the held-out phrases come from 1 piece" in checks["C2ST"]["target"]
    assert res["quality_terms"]["C2ST"] == 0.0


def test_reference_measures_generated_phrases_against_held_out_with_training_floors():
    real, train = chorales(60, seed=1), chorales(80, seed=2)
    groups = np.repeat(np.arange(12), 5)  # 12 pieces of 5 overlapping phrases each
    ref = E.Reference(real, train, SPB, LOW, NAMES, 40, real_groups=groups, train_groups=np.repeat(np.arange(16), 5))
    assert ref.real_metrics["crossing"] == 0.0 and 1.0 < ref.real_metrics["leap_semitones"] < 2.5
    assert ref.training_metrics["spacing"] == ref.real_metrics["spacing"] == 0.0
    assert 0 < ref.floors["FMD_floor"] and ref.floors["C2ST_floor"]["folds"] == 5

    same = ref.measure(chorales(40, seed=3))
    assert all(c["ok"] for k, c in E.judge(same).items() if k in ("leap_semitones", "pitch_range", "crossing"))
    assert same["C2ST"]["accuracy"] < 0.75 and same["copies"] == 0.0

    strays = ref.measure(chorales(40, seed=4, alto_up=True))
    checks = E.judge(strays)
    assert strays["generated"]["crossing"] > 0.3  # the alto sits above the soprano at most beats
    assert not checks["crossing"]["ok"] and not checks["C2ST"]["ok"] and strays["C2ST"]["accuracy"] > 0.95
    assert strays["quality"] > same["quality"] + 3


def test_c2st_folds_follow_the_number_of_held_out_pieces():
    real = chorales(20, seed=1)
    three = E.c2st(real, chorales(20, seed=2), SPB, LOW, real_groups=np.repeat(np.arange(3), [7, 7, 6]))
    assert three["folds"] == 3
    one = E.c2st(real, chorales(20, seed=2), SPB, LOW, real_groups=np.zeros(20))
    assert one["accuracy"] is None and "1 piece" in one["skipped"]


def test_table_shows_every_measure_with_its_target_and_what_was_missed():
    res = measured({"crossing": 8 * 0.0081, "leap_semitones": 6.0}, c2st=1.0)
    checks = E.judge(res)
    report = {"checkpoint": "/runs/x/checkpoint_000100", "step": 100, "n": 1000, "grid": "16 steps per bar",
              "metrics": res, "checks": checks, "passed": all(c["ok"] for c in checks.values()),
              "json_path": "/runs/x/evaluation.json"}
    text = E.table_text(report)
    lines = {line.split()[0]: line for line in text.splitlines()[3:] if line.strip()}
    assert "MISS" in lines["leap"] and "within 15%" in lines["leap"] and "131.7%" in lines["leap"]
    assert "MISS" in lines["crossing"] and "8.00x" in lines["crossing"] and "0.81%" in lines["crossing"]
    assert "ok" in lines["parallels"] and "<= 2x held-out" in lines["parallels"]
    for label in ("range", "leaps>8ve", "spacing", "QN", "TD"):
        assert label in lines
    c2st_line = next(line for line in text.splitlines() if "C2ST accuracy" in line)
    assert "MISS" in c2st_line and "<= 0.85" in c2st_line and "1.000" in c2st_line
    assert "vertical intervals" in text and "FMD / untrained" in text
    assert f"quality (the search objective; 0 = every target met, FMD at the floor) {res['quality']:.2f}" in text
    assert "all targets met: no, missed leap_semitones, crossing, C2ST" in text


def test_training_time_plot_shows_the_new_measures(tmp_path, monkeypatch):
    from musicgan import render
    from musicgan.train import RATIO_KEYS, RunLog

    plotted = {}
    monkeypatch.setattr(render, "metric_plot", lambda rows, keys, path, title="": plotted.setdefault(path.name, keys))
    log = RunLog(tmp_path, {"kind": "pianoroll"}, 0)
    log.log(10, {"quality": 3.5, "C2ST": 0.9, "ratio/crossing": 2.5, "gen/leap_semitones": 3.1, "FMD": 0.4})
    log.plots()
    keys = plotted["metrics.png"]
    assert {"quality", "C2ST", "targets_missed", "vertical_distance"} <= set(keys)
    assert {f"ratio/{k}" for k in RATIO_KEYS} <= set(keys)
    assert {"leap_semitones", "pitch_range", "octave_leaps", "parallels_per_100", "crossing", "spacing"} == set(
        RATIO_KEYS)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    log.tb.close()


def test_training_summary_shows_the_objective_and_the_voice_measures(tmp_path):
    from musicgan.train import summary_text

    row = {"step": 200, "FMD": 0.5, "FMD_untrained": 9.6, "FMD_floor": 0.015, "diversity": 0.9, "copies": 0.0,
           "C2ST": 0.97, "quality": 14.2, "targets_missed": 6}
    row |= {f"gen/{k}": 2 * v for k, v in BACH.items()} | {f"real/{k}": v for k, v in BACH.items()}
    (tmp_path / "metrics.csv").write_text(",".join(row) + "\n" + ",".join(str(v) for v in row.values()) + "\n")

    class Result:
        error = checkpoint = None

    lines = summary_text(Result(), str(tmp_path)).splitlines()
    assert "C2ST 0.970" in lines[2] and "training 0.015" in lines[2]
    assert lines[3].startswith("  quality      14.200") and "6 targets missed" in lines[3]
    voice = next(i for i, line in enumerate(lines) if line.split()[1:3] == ["leap", "8ve_leaps"])
    assert lines[voice + 1].split()[1:] == ["5.180", "0.13%", "0.840", "1.62%", "0.80%"]
    assert lines[voice + 2].split()[1:] == ["2.590", "0.07%", "0.420", "0.81%", "0.40%"]
