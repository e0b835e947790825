"""Style evaluation (musicgan/style_eval.py) on hand-built styles with known answers: two styles that
differ in register and rhythm are told apart; generated sets equal to one style land in it; the
separation of a set from itself is 0 and of the real sets themselves 1."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan import style_eval as S

T, SPB, STEPS, P, LOW = 4, 16, 64, 48, 36


def rolls(n: int, style: int, seed: int) -> np.ndarray:
    """Voice lines as random walks; style 0: quarter notes high up, style 1: eighths a fifth lower."""
    rng = np.random.default_rng(seed)
    note_steps = 4 if style == 0 else 2
    out = np.zeros((n, T, STEPS, P), bool)
    for i in range(n):
        for t in range(T):
            centre = 38 - 8 * t - (7 if style else 0)
            walk = np.clip(centre + np.cumsum(rng.integers(-2, 3, STEPS // note_steps)), 0, P - 1)
            out[i, t, np.arange(STEPS), np.repeat(walk, note_steps)] = True
    return out


def features(x):
    return S._features(x, SPB, LOW)


@pytest.fixture(scope="module")
def real():
    return {0: rolls(60, 0, 1), 1: rolls(60, 1, 2)}


def test_two_distinct_styles_are_told_apart_and_generated_sets_are_labelled(real):
    x = np.concatenate([features(real[0]), features(real[1])])
    y = np.repeat([0, 1], 60)
    groups = np.repeat(np.arange(24), 5)  # pieces of 5 phrases, each within one style
    assert S.classifier_ceiling(x, y, groups) >= 0.95
    as_asked = S.style_accuracy(x, y, {0: features(rolls(30, 0, 7)), 1: features(rolls(30, 1, 8))})
    assert as_asked["accuracy"] >= 0.95 and as_asked["per_style"][0] >= 0.9
    swapped = S.style_accuracy(x, y, {0: features(rolls(30, 1, 7)), 1: features(rolls(30, 0, 8))})
    assert swapped["accuracy"] <= 0.05  # every phrase lands in the other style
    assert np.array(swapped["confusion"]).sum() == 60


def test_indistinguishable_styles_give_a_chance_ceiling():
    same = rolls(80, 0, 3)
    x, y = features(same), np.repeat([0, 1], 40)
    assert 0.25 <= S.classifier_ceiling(x, y, np.repeat(np.arange(16), 5)) <= 0.75


def test_separation_of_the_real_sets_is_one_and_of_a_blurred_model_near_zero(real):
    exact = S.style_separation(real, real, SPB, LOW)
    assert exact["min_ratio"] == pytest.approx(1.0)
    blurred = {0: real[0][:30], 1: real[0][30:]}  # one style written for both
    sep = S.style_separation(blurred, real, SPB, LOW)
    assert sep["min_ratio"] < 0.25  # (two halves of one set of 30: the sampling noise of FMD, far under 0.7)
    pair = sep["pairs"][(0, 1)]
    assert pair["real"] > 0 and pair["ratio"] == pytest.approx(pair["generated"] / pair["real"])
