"""The classifier two-sample test on synthetic chorale-like phrases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan import c2st as C

SPB, LOW, PITCHES = 16, 36, 48
BEAT = SPB // 4
REGISTERS = (67, 62, 55, 46)  # where each voice starts: soprano, alto, tenor, bass (MIDI)


def chorales(n: int, seed: int, octave_stray: float = 0.0) -> np.ndarray:
    """``[n, 4, 64, 48]`` phrases: each voice a random walk of quarter notes by -2..+2 semitones around
    its register; with ``octave_stray`` > 0, that share of notes jumps an octave away and back."""
    rng = np.random.default_rng(seed)
    beats = 4 * 4
    out = np.zeros((n, 4, beats * BEAT, PITCHES), bool)
    for i in range(n):
        for t, start in enumerate(REGISTERS):
            pitch = start + rng.integers(-3, 4)
            for b in range(beats):
                pitch = int(np.clip(pitch + rng.integers(-2, 3), start - 6, start + 6))
                shown = pitch + (12 if pitch < 60 else -12) * (rng.random() < octave_stray)
                out[i, t, b * BEAT : (b + 1) * BEAT, shown - LOW] = True
    return out


def test_feature_names_match_the_columns_for_every_group():
    x = chorales(3, seed=0)
    for groups in [C.FEATURE_GROUPS] + [(g,) for g in C.FEATURE_GROUPS]:
        assert C.phrase_features(x, SPB, LOW, groups).shape == (3, len(C.feature_names(4, SPB, groups)))
    with pytest.raises(ValueError, match="feature groups"):
        C.phrase_features(x, SPB, LOW, ("pitch_classes", "timbre"))


def test_features_of_a_known_phrase():
    x = np.zeros((1, 2, 2 * SPB, PITCHES), bool)
    x[0, 0, 0:8, 67 - LOW] = True    # upper: G, a fifth above the lower C, then C' an octave above it
    x[0, 0, 8:16, 72 - LOW] = True
    x[0, 1, 0:16, 60 - LOW] = True   # lower: C for a bar, then silent
    f = dict(zip(C.feature_names(2, SPB), C.phrase_features(x, SPB, LOW)[0]))
    assert f["v0/pc7"] == 0.5 and f["v0/pc0"] == 0.5 and f["v1/pc0"] == 1.0
    assert f["v0/leap+5"] == 1.0 and f["v1/leap+0"] == 0.0
    assert f["v0/sounding"] == 0.5 and f["v0/notes_per_bar"] == 1.0 and f["v0/range_octaves"] == pytest.approx(5 / 12)
    assert f["v0-v1/ic7"] == 0.5 and f["v0-v1/ic0"] == 0.5  # beats 0, 1 a fifth; beats 2, 3 an octave
    assert f["v0-v1/distance_octaves"] == pytest.approx((7 + 7 + 12 + 12) / 4 / 12)
    assert f["onset_step0"] == pytest.approx(2 / 3) and f["onset_step8"] == pytest.approx(1 / 3)
    assert f["crossing"] == 0.0 and f["parallels_per_transition"] == 0.0


@pytest.mark.parametrize("classifier, per_class", [("logistic", 150), ("mlp", 100)])
def test_same_distribution_is_near_chance_and_octave_strays_are_caught(classifier, per_class):
    real = chorales(per_class, seed=1)
    same = C.c2st_accuracy(real, chorales(per_class, seed=2), SPB, LOW, classifier=classifier)
    assert 0.4 < same["accuracy"] < 0.6
    strays = C.c2st_accuracy(real, chorales(per_class, seed=3, octave_stray=0.1), SPB, LOW, classifier=classifier)
    assert strays["accuracy"] > 0.95
    assert strays["phrases_per_class"] == per_class and len(strays["fold_accuracies"]) == 5


def test_deterministic_under_a_seed_and_balanced():
    real, gen = chorales(80, seed=4), chorales(120, seed=5, octave_stray=0.02)
    a = C.c2st_accuracy(real, gen, SPB, LOW, seed=7)
    assert a == C.c2st_accuracy(real, gen, SPB, LOW, seed=7)
    assert a["phrases_per_class"] == 80  # the larger set is subsampled: chance stays 0.5


def test_group_folds_keep_a_group_together_and_balance_the_folds():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), rng.integers(1, 30, size=20))
    fold = C._group_folds(groups, 5, rng)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= np.bincount(groups).max()


def test_grouped_folds_stop_the_classifier_learning_real_pieces_by_heart():
    # real: 10 "pieces", each cut into 20 near-identical phrases (as overlapping windows are);
    # generated: independent phrases from the same process. Random folds let the classifier learn
    # the pieces; folds by piece do not.
    pieces = chorales(10, seed=6)
    real = np.repeat(pieces, 20, axis=0)
    gen = chorales(200, seed=7)
    piece = np.repeat(np.arange(10), 20)
    leaky = C.c2st_accuracy(real, gen, SPB, LOW)["accuracy"]
    fair = C.c2st_accuracy(real, gen, SPB, LOW, real_groups=piece)["accuracy"]
    assert leaky > 0.9
    assert fair < leaky - 0.2


def test_clear_errors_for_bad_arguments():
    x = chorales(10, seed=8)
    with pytest.raises(ValueError, match="classifier must be one of"):
        C.c2st_accuracy(x, x, SPB, LOW, classifier="boosting")
    with pytest.raises(ValueError, match="at least 5 phrases"):
        C.c2st_accuracy(x, x[:3], SPB, LOW)
    with pytest.raises(ValueError, match="one group id per phrase"):
        C.c2st_accuracy(x, x, SPB, LOW, real_groups=[0, 1])
    with pytest.raises(ValueError, match="at least 5 groups of real"):
        C.c2st_accuracy(x, x, SPB, LOW, real_groups=np.zeros(10))
