"""The originality index (musicgan/originality.py) on hand-built rolls with known overlaps, and against
the ``copies`` metric's own matrix product on random rolls."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan.metrics import COPY_OVERLAP, copy_rate
from musicgan.originality import INDEX_FILE, OriginalityIndex

T, SPB, BARS, P = 2, 4, 4, 12
S = SPB * BARS


def phrase(cells: list[tuple[int, int, int]]) -> np.ndarray:
    roll = np.zeros((T, S, P), bool)
    for t, s, p in cells:
        roll[t, s, p] = True
    return roll


def line(pitch: int, track: int = 0, steps=range(S)) -> list[tuple[int, int, int]]:
    return [(track, s, pitch) for s in steps]


def reference(sample: np.ndarray, train: np.ndarray) -> float:
    """Max over bar-hop windows of shared / max(cells), by matrix product as copy_rate computes it."""
    t, steps, p = sample.shape
    if steps < S:
        sample = np.concatenate([sample, np.zeros((t, S - steps, p), bool)], 1)
    tr = train.reshape(len(train), -1).astype(np.float64)
    best = 0.0
    for a in range(0, sample.shape[1] - S + 1, SPB):
        w = sample[:, a: a + S].reshape(-1).astype(np.float64)
        denom = np.maximum(np.maximum(w.sum(), tr.sum(1)), 1)
        best = max(best, float(((tr @ w) / denom).max()))
    return best


def test_hand_built_overlaps():
    a = phrase(line(5))  # 16 cells
    b = phrase(line(5, steps=range(12)) + line(7, steps=range(12, 16)))  # shares 12 of 16 with a
    c = phrase(line(3, track=1, steps=range(8)))  # 8 cells, none shared with a
    index = OriginalityIndex.build(np.stack([a, b, c]), SPB)
    assert index.n_phrases == 3 and index.shape == (T, S, P)
    assert np.allclose(index.overlaps(a), [1.0, 12 / 16, 0.0])
    # a sample with half of c's cells: shared 4, max(4, 8) = 8
    assert np.allclose(index.overlaps(phrase(line(3, track=1, steps=range(4)))), [0, 0, 0.5])
    assert index.max_overlap(a) == 1.0 and index.is_copy(1.0)
    assert index.max_overlap(b) == 1.0
    assert index.max_overlap(np.zeros((T, S, P), bool)) == 0.0  # silence overlaps nothing


def test_the_threshold_is_strict_as_in_the_copies_metric():
    a = phrase(line(5, steps=range(10)) + line(2, track=1, steps=range(10)))  # 20 cells
    near = a.copy()
    near[1, 8:10, 2] = False  # 18 of 20 shared: exactly 0.9
    index = OriginalityIndex.build(a[None], SPB)
    assert index.max_overlap(near) == pytest.approx(COPY_OVERLAP)
    assert not index.is_copy(index.max_overlap(near))
    assert copy_rate(near[None], a[None]) == 0.0  # the metric agrees: 0.9 is not over 0.9
    nearer = a.copy()
    nearer[1, 9, 2] = False  # 19 of 20
    assert index.is_copy(index.max_overlap(nearer)) and copy_rate(nearer[None], a[None]) == 1.0


def test_a_long_sample_is_read_in_windows_a_bar_apart():
    a = phrase(line(5, steps=range(0, S, 2)) + line(9, track=1, steps=range(1, S, 2)))
    index = OriginalityIndex.build(a[None], SPB)
    long = np.zeros((T, 7 * SPB, P), bool)
    long[:, 2 * SPB: 2 * SPB + S] = a  # bars 3-6 of 7 are the training phrase
    assert index.max_overlap(long) == 1.0
    shifted = np.zeros((T, 7 * SPB, P), bool)
    shifted[:, 2 * SPB + 1: 2 * SPB + 1 + S] = a[:, :S]  # a step off the bar grid: no window lines up
    assert index.max_overlap(shifted) < 0.5
    short = a[:, : 2 * SPB]  # two bars: padded with silence to a phrase
    assert index.max_overlap(short) == pytest.approx(0.5)


def test_kernel_equals_the_matrix_product_on_random_rolls():
    rng = np.random.default_rng(0)
    train = rng.random((300, T, S, P)) < 0.05
    train[:5] = False  # empty phrases: their denominator is the sample's own cells
    index = OriginalityIndex.build(train, SPB)
    for k in range(40):
        steps = int(rng.integers(1, 9)) * SPB
        sample = rng.random((T, steps, P)) < 0.05
        if k % 4 == 0:  # some samples mostly copy a training phrase
            sample[:, : min(steps, S)] |= train[k][:, : min(steps, S)]
        assert index.max_overlap(sample) == pytest.approx(reference(sample, train), abs=1e-12)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.random((50, T, S, P)) < 0.1
    index = OriginalityIndex.build(train, SPB)
    path = index.save(tmp_path / INDEX_FILE)
    assert [p.name for p in tmp_path.iterdir()] == [INDEX_FILE]  # no temporary left behind
    again = OriginalityIndex.load(path)
    assert again.shape == index.shape and again.n_phrases == 50 and again.threshold == COPY_OVERLAP
    sample = rng.random((T, 2 * S, P)) < 0.1
    assert again.max_overlap(sample) == index.max_overlap(sample)


def test_bad_shapes_are_refused():
    index = OriginalityIndex.build(np.zeros((2, T, S, P), bool), SPB)
    with pytest.raises(ValueError, match="tracks"):
        index.max_overlap(np.zeros((T + 1, S, P), bool))
    with pytest.raises(ValueError, match="N, tracks"):
        OriginalityIndex.build(np.zeros((T, S, P), bool), SPB)
