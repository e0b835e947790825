"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, 2017): can a small classifier tell generated
phrases from real ones? Accuracy 0.5 means it cannot; 1.0 means every phrase gives itself away.

The test is fair to both sides by construction:

- the larger set is subsampled (under the seed) to the size of the smaller, so chance is 0.5;
- stratified k-fold: the classifier is trained on k-1 folds and scored on the held-out fold, and the
  reported accuracy is over every phrase, each scored by a classifier that never saw it;
- folds can keep groups together (``real_groups``: the source piece of each real phrase). Real
  phrases are overlapping windows of a few held-out pieces; split at random, the classifier learns
  those pieces by heart: Bach's own train phrases then score 0.75 against val (logistic; 0.89 with
  the MLP), where folds by chorale give 0.50 (0.53);
- features are standardised with the training folds' statistics only;
- everything is deterministic under ``seed``.

Features (per phrase; :func:`feature_names` lists them). A voice's line is its highest sounding pitch
per step (:func:`musicgan.metrics.voice_lines`); beats are quarter notes.

1. per voice, **pitch classes**: histogram of the line's pitch classes over its sounding steps (12);
2. per voice, **melodic intervals**: histogram of the signed leaps between consecutive notes, -12..+12
   semitones, with two more bins for leaps down or up by more than an octave (27, sums to 1);
3. per voice, **register and rhythm**: mean, standard deviation, lowest and highest pitch (in
   octaves above ``pitch_low``), range, sounding fraction of steps, notes per bar, and the share of
   sounding steps with more than one pitch in the voice (8);
4. per voice pair, **vertical intervals**: histogram of interval classes ``|upper - lower| mod 12`` at
   beats where both sound (12), plus their mean distance in octaves (1);
5. **voice leading**: parallel fifths/octaves per voice-pair transition, adjacent-voice crossing
   rate and upper-voice spacing rate, as in :mod:`musicgan.metrics` but per phrase (3);
6. **onset positions**: share of note onsets (all voices) at each step of the bar (``steps_per_bar``).

Classifiers: ``logistic`` (default), L2-regularised logistic regression (penalty 1 on standardised
features) fitted to its minimum by Newton's method, in numpy; ``mlp``, one hidden layer of 64 ReLU
units with weight decay, trained full-batch with Adam in torch, for tells that are not linear in
the features. Neither is tuned to win: a critic of the test can rerun it with the other one, or
with a feature group alone (``groups``).

Sensitivity on the ``bach`` build (621 val phrases against 621 train phrases, folds by chorale):
moving 1% of the beats of each voice an octave away scores 0.58 (MLP 0.60), 3% scores 0.68 (0.69),
every alto an octave away, or each voice's steps shuffled, 1.00.
"""

from __future__ import annotations

import contextlib

import numpy as np

from musicgan import metrics as M

FEATURE_GROUPS = ("pitch_classes", "intervals", "register", "vertical", "voice_leading", "onsets")
CLASSIFIERS = ("logistic", "mlp")
INTERVAL_BINS = 27  # -12..+12, then "down more than an octave" and "up more than an octave"
LOGISTIC_L2 = 1.0
MLP_HIDDEN = 64
MLP_EPOCHS = 300
MLP_LR = 1e-2
MLP_WEIGHT_DECAY = 1e-3


def feature_names(n_tracks: int, steps_per_bar: int, groups=FEATURE_GROUPS) -> list[str]:
    """Names of :func:`phrase_features`' columns, in order."""
    _check_groups(groups)
    names = []
    voices = range(n_tracks)
    pairs = [(i, j) for i in voices for j in range(i + 1, n_tracks)]
    if "pitch_classes" in groups:
        names += [f"v{t}/pc{pc}" for t in voices for pc in range(12)]
    if "intervals" in groups:
        names += [f"v{t}/leap{d:+d}" for t in voices for d in range(-12, 13)]
        names += [f"v{t}/leap{side}" for t in voices for side in ("<-12", ">+12")]
    if "register" in groups:
        names += [f"v{t}/{s}" for t in voices for s in ("mean_octaves", "std_octaves", "low_octaves", "high_octaves",
                                                         "range_octaves", "sounding", "notes_per_bar", "chords")]
    if "vertical" in groups:
        names += [f"v{i}-v{j}/ic{ic}" for i, j in pairs for ic in range(12)]
        names += [f"v{i}-v{j}/distance_octaves" for i, j in pairs]
    if "voice_leading" in groups:
        names += ["parallels_per_transition", "crossing", "spacing"]
    if "onsets" in groups:
        names += [f"onset_step{s}" for s in range(steps_per_bar)]
    return names


def _check_groups(groups) -> None:
    unknown = sorted(set(groups) - set(FEATURE_GROUPS))
    if unknown or not groups:
        raise ValueError(f"feature groups must be a non-empty subset of {FEATURE_GROUPS}, not {list(groups)}")


def _hist(values: np.ndarray, bins: int) -> np.ndarray:
    counts = np.bincount(values, minlength=bins).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def phrase_features(rolls, steps_per_bar: int, pitch_low: int, groups=FEATURE_GROUPS) -> np.ndarray:
    """``[N, features]`` float64, the columns :func:`feature_names` names."""
    _check_groups(groups)
    rolls = M._bool(rolls)
    n, n_tracks, n_steps, _ = rolls.shape
    lines = M.voice_lines(rolls)  # [N, T, S], -1 silent
    beats = M.beat_lines(rolls, steps_per_bar)
    sounding = lines >= 0
    pairs = [(i, j) for i in range(n_tracks) for j in range(i + 1, n_tracks)]
    blocks = []
    if "pitch_classes" in groups:
        pc = np.zeros((n, n_tracks, 12))
        for c in range(12):
            pc[..., c] = (sounding & ((lines + pitch_low) % 12 == c)).sum(-1)
        pc /= np.maximum(pc.sum(-1, keepdims=True), 1)
        blocks.append(pc.reshape(n, -1))
    if "intervals" in groups:
        iv = np.zeros((n, n_tracks, INTERVAL_BINS))
        for i in range(n):
            for t in range(n_tracks):
                leaps = M._leaps(lines[i : i + 1, t])
                bins = np.where(leaps < -12, 25, np.where(leaps > 12, 26, leaps + 12))
                iv[i, t] = _hist(bins, INTERVAL_BINS)
        blocks.append(np.concatenate([iv[..., :25].reshape(n, -1), iv[..., 25:].reshape(n, -1)], 1))
    if "register" in groups:
        reg = np.zeros((n, n_tracks, 8))
        count = sounding.sum(-1)
        safe = np.maximum(count, 1)
        pitch = np.where(sounding, lines, 0).astype(np.float64)
        mean = pitch.sum(-1) / safe
        var = (np.where(sounding, (pitch - mean[..., None]) ** 2, 0)).sum(-1) / safe
        low = np.where(sounding, lines, 10**6).min(-1)
        high = lines.max(-1)
        onset = sounding & np.concatenate([np.ones_like(lines[..., :1], bool), lines[..., 1:] != lines[..., :-1]], -1)
        playing = count > 0
        reg[..., 0] = mean / 12
        reg[..., 1] = np.sqrt(var) / 12
        reg[..., 2] = np.where(playing, low, 0) / 12
        reg[..., 3] = np.where(playing, high, 0) / 12
        reg[..., 4] = np.where(playing, high - low, 0) / 12
        reg[..., 5] = count / n_steps
        reg[..., 6] = onset.sum(-1) / (n_steps / steps_per_bar)
        reg[..., 7] = (rolls.sum(-1) > 1).sum(-1) / safe
        blocks.append(reg.reshape(n, -1))
    if "vertical" in groups:
        ic_hist = np.zeros((n, len(pairs), 12))
        dist = np.zeros((n, len(pairs)))
        for k, (i, j) in enumerate(pairs):
            a, b = beats[:, i], beats[:, j]
            both = (a >= 0) & (b >= 0)
            gap = np.abs(a - b)
            for c in range(12):
                ic_hist[:, k, c] = (both & (gap % 12 == c)).sum(-1)
            dist[:, k] = np.where(both, gap, 0).sum(-1) / np.maximum(both.sum(-1), 1) / 12
        ic_hist /= np.maximum(ic_hist.sum(-1, keepdims=True), 1)
        blocks += [ic_hist.reshape(n, -1), dist]
    if "voice_leading" in groups:
        parallels, transitions = M.parallel_counts(beats)
        crossed, wide, cells = M.adjacent_pair_counts(beats)
        blocks.append(np.stack([parallels, crossed, wide], 1) / np.maximum(np.stack([transitions, cells, cells], 1), 1))
    if "onsets" in groups:
        onset = sounding & np.concatenate([np.ones_like(lines[..., :1], bool), lines[..., 1:] != lines[..., :-1]], -1)
        per_position = onset.reshape(n, n_tracks, n_steps // steps_per_bar, steps_per_bar).sum((1, 2)).astype(np.float64)
        blocks.append(per_position / np.maximum(per_position.sum(-1, keepdims=True), 1))
    return np.concatenate(blocks, 1)


# ---------------------------------------------------------------------------------------------
# classifiers: fit on standardised training features, return held-out predictions (1 = generated)


def _logistic(x_train, y_train, x_test, seed: int) -> np.ndarray:
    """L2-penalised logistic regression, fitted by Newton's method: the loss is strictly convex, so
    this reaches its one minimum in a few steps."""
    xb = np.concatenate([x_train, np.ones((len(x_train), 1))], 1)
    penalty = np.full(xb.shape[1], LOGISTIC_L2)
    penalty[-1] = 0.0  # the bias is not shrunk
    w = np.zeros(xb.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y_train) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return (np.concatenate([x_test, np.ones((len(x_test), 1))], 1) @ w > 0).astype(int)


def _mlp(x_train, y_train, x_test, seed: int) -> np.ndarray:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a net this small runs ~10x slower on two contended threads than on one
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], MLP_HIDDEN), torch.nn.ReLU(),
                                      torch.nn.Linear(MLP_HIDDEN, 1))
            opt = torch.optim.Adam(net.parameters(), lr=MLP_LR, weight_decay=MLP_WEIGHT_DECAY)
            xt = torch.from_numpy(x_train.astype(np.float32))
            yt = torch.from_numpy(y_train.astype(np.float32))
            for _ in range(MLP_EPOCHS):
                opt.zero_grad()
                torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt).backward()
                opt.step()
            with torch.no_grad():
                return (net(torch.from_numpy(x_test.astype(np.float32)))[:, 0] > 0).numpy().astype(int)
    finally:
        torch.set_num_threads(threads)


def _one_blas_thread():
    """Small dense algebra runs up to 100x slower on contended BLAS threads (two shared cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not a declared dependency; without it the test is only slower
        return contextlib.nullcontext()
    return threadpool_limits(1)


_FIT = {"logistic": _logistic, "mlp": _mlp}


def _group_folds(groups: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each item such that a group's items share a fold: groups, largest first (ties in random
    order), each go to the fold holding the fewest items so far."""
    ids, sizes = np.unique(groups, return_counts=True)
    order = np.lexsort((rng.permutation(len(ids)), -sizes))
    load = np.zeros(folds, np.int64)
    fold_of = {}
    for g in order:
        k = int(np.argmin(load))
        fold_of[ids[g]] = k
        load[k] += sizes[g]
    return np.array([fold_of[g] for g in groups], np.int64)


def c2st_accuracy(real, generated, steps_per_bar: int, pitch_low: int, folds: int = 5, seed: int = 0,
                  classifier: str = "logistic", groups=FEATURE_GROUPS, real_groups=None,
                  generated_groups=None) -> dict:
    """Held-out accuracy of a classifier telling ``generated`` phrases from ``real`` ones.

    ``real_groups`` (one id per real phrase, e.g. its source file) keeps every phrase of a group in one
    fold. Pass it for real data cut into overlapping windows: otherwise the classifier learns the
    few held-out pieces by heart, and even Bach's training phrases score about 0.75 against val.
    ``generated_groups`` does the same for the other side; by default every phrase is its own group.

    Returns ``{"accuracy", "fold_accuracies", "phrases_per_class", "folds", "classifier", "features"}``;
    ``accuracy`` is the share of all (balanced) phrases classified right by the fold that held them out.
    """
    if classifier not in _FIT:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, not {classifier!r}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, not {folds}")
    per_class = min(len(real), len(generated))
    if per_class < folds:
        raise ValueError(f"a {folds}-fold C2ST needs at least {folds} phrases in each set "
                         f"(got {len(real)} real, {len(generated)} generated)")
    real_groups = np.arange(len(real)) if real_groups is None else np.asarray(real_groups)
    generated_groups = np.arange(len(generated)) if generated_groups is None else np.asarray(generated_groups)
    if len(real_groups) != len(real) or len(generated_groups) != len(generated):
        raise ValueError(f"need one group id per phrase: {len(real_groups)} ids for {len(real)} real phrases, "
                         f"{len(generated_groups)} for {len(generated)} generated")
    rng = np.random.default_rng(seed)
    keep_real = np.sort(rng.choice(len(real), per_class, replace=False))
    keep_gen = np.sort(rng.choice(len(generated), per_class, replace=False))
    real, real_groups = np.asarray(real)[keep_real], real_groups[keep_real]
    generated, generated_groups = np.asarray(generated)[keep_gen], generated_groups[keep_gen]
    for name, g in (("real", real_groups), ("generated", generated_groups)):
        if len(np.unique(g)) < folds:
            raise ValueError(f"a {folds}-fold C2ST needs at least {folds} groups of {name} phrases, "
                             f"got {len(np.unique(g))}")
    x = np.concatenate([phrase_features(real, steps_per_bar, pitch_low, groups),
                        phrase_features(generated, steps_per_bar, pitch_low, groups)])
    y = np.repeat([0, 1], per_class)
    fold = np.concatenate([_group_folds(real_groups, folds, rng), _group_folds(generated_groups, folds, rng)])
    correct = np.zeros(len(y), bool)
    fold_acc = []
    with _one_blas_thread():
        for k in range(folds):
            train, test = fold != k, fold == k
            mu, sd = x[train].mean(0), x[train].std(0)
            sd[sd < 1e-9] = 1.0  # a constant feature carries nothing; keep it at zero
            pred = _FIT[classifier]((x[train] - mu) / sd, y[train], (x[test] - mu) / sd, seed * 1000 + k)
            correct[test] = pred == y[test]
            fold_acc.append(float(correct[test].mean()))
    return {"accuracy": float(correct.mean()), "fold_accuracies": fold_acc, "phrases_per_class": per_class,
            "folds": folds, "classifier": classifier, "features": x.shape[1]}
