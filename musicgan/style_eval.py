"""Evaluation of a model trained on several styles (``data build --source styles``): is each style
written as that style, and are the styles kept apart?

- **Per style**: each style's generated phrases (conditioned on it) against that style's own held-out
  phrases, with the usual table (:class:`musicgan.evaluate.Reference`: metrics within 15%, FMD ratio
  against an untrained generator, diversity, copies against that style's training phrases).
- **Style accuracy**: a small classifier learns to tell the styles apart from real held-out phrases;
  it then labels generated ones, and the figure is the share that land in the style asked for. Its
  **ceiling** is its own accuracy on real held-out phrases, scored by folds that keep each source
  piece in one fold (:func:`musicgan.c2st._group_folds`), so it cannot win by recognising pieces. The
  target is at least 0.8 of that ceiling: the model need not write more recognisably than the
  masters, only nearly as recognisably.
- **Style separation**: for each pair of styles, the Fréchet distance (FMD statistics) between their
  generated sets over the one between their real held-out sets. Near 1, the model keeps the styles as
  far apart as they are; near 0, it blurs them into one. The target is at least 0.7 for every pair.

Features are :func:`musicgan.c2st.phrase_features` (pitch classes, intervals, register and rhythm,
vertical intervals, voice leading, onset positions), standardised on the training rows; the
classifier is multinomial logistic regression with an L2 penalty, fitted full-batch (L-BFGS, torch),
deterministic under its seed.
"""

from __future__ import annotations

import itertools

import numpy as np

from musicgan import metrics as M

STYLE_ACCURACY_OF_CEILING_MIN = 0.8
STYLE_SEPARATION_MIN = 0.7
L2 = 1e-2
FOLDS = 5


def _features(rolls, steps_per_bar: int, pitch_low: int) -> np.ndarray:
    from musicgan.c2st import phrase_features

    return phrase_features(rolls, steps_per_bar, pitch_low)


class StyleClassifier:
    """Multinomial logistic regression on phrase features; ``fit`` then ``predict``."""

    def __init__(self, n_styles: int, seed: int = 0):
        self.n_styles, self.seed = n_styles, seed
        self.mean = self.std = self.w = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "StyleClassifier":
        import torch

        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy(((x - self.mean) / self.std).astype(np.float64))
        yt = torch.from_numpy(np.asarray(y, np.int64))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            w = torch.zeros(x.shape[1] + 1, self.n_styles, dtype=torch.float64, requires_grad=True)
            opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")
            xb = torch.cat([xt, torch.ones(len(xt), 1, dtype=torch.float64)], 1)

            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(xb @ w, yt) + L2 * (w[:-1] ** 2).sum()
                loss.backward()
                return loss

            opt.step(closure)
        self.w = w.detach().numpy()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        return (np.concatenate([z, np.ones((len(z), 1))], 1) @ self.w).argmax(1)


def classifier_ceiling(x: np.ndarray, y: np.ndarray, groups, folds: int = FOLDS, seed: int = 0) -> float:
    """Held-out accuracy on real phrases: each phrase scored by a classifier trained on the folds that do
    not hold its source piece."""
    from musicgan.c2st import _group_folds

    fold = _group_folds(np.asarray(groups), folds, np.random.default_rng(seed))
    right = 0
    for k in range(folds):
        test = fold == k
        if not test.any() or test.all():
            continue
        clf = StyleClassifier(int(y.max()) + 1, seed).fit(x[~test], y[~test])
        right += int((clf.predict(x[test]) == y[test]).sum())
    return right / len(y)


def style_accuracy(real_x: np.ndarray, real_y: np.ndarray, generated: dict[int, np.ndarray], seed: int = 0) -> dict:
    """The classifier trained on all real held-out phrases labels each style's generated features;
    returns the share landing in the asked style, overall and per style, and the confusion counts."""
    n_styles = int(real_y.max()) + 1
    clf = StyleClassifier(n_styles, seed).fit(real_x, real_y)
    per_style, confusion, right, total = {}, np.zeros((n_styles, n_styles), np.int64), 0, 0
    for style, x in generated.items():
        pred = clf.predict(x)
        np.add.at(confusion[style], pred, 1)
        per_style[style] = float((pred == style).mean())
        right += int((pred == style).sum())
        total += len(pred)
    return {"accuracy": right / max(total, 1), "per_style": per_style, "confusion": confusion.tolist()}


def style_separation(generated: dict[int, np.ndarray], real: dict[int, np.ndarray], steps_per_bar: int,
                     pitch_low: int, track_names: list[str] | None = None) -> dict:
    """Per pair of styles: FMD between their generated sets / FMD between their real sets."""
    g_stats = {s: M.statistics_vector(r, steps_per_bar, pitch_low, track_names) for s, r in generated.items()}
    r_stats = {s: M.statistics_vector(r, steps_per_bar, pitch_low, track_names) for s, r in real.items()}
    pairs = {}
    for a, b in itertools.combinations(sorted(set(generated) & set(real)), 2):
        real_d = M.frechet_distance(r_stats[a], r_stats[b])
        gen_d = M.frechet_distance(g_stats[a], g_stats[b])
        pairs[(a, b)] = {"generated": gen_d, "real": real_d, "ratio": gen_d / real_d if real_d > 0 else None}
    ratios = [p["ratio"] for p in pairs.values() if p["ratio"] is not None]
    return {"pairs": pairs, "min_ratio": min(ratios) if ratios else None}


def evaluate_styles(checkpoint: str, data_dir: str, n_per_style: int = 256, seed: int = 0) -> dict:
    """Everything above for one checkpoint on its styles build; one JSON-able report."""
    import torch

    from musicgan.checkpoint import find_latest, load_generator
    from musicgan.data.shards import ShardReader
    from musicgan.model import build_models

    path = find_latest(checkpoint)
    g, cfg, data, meta = load_generator(path)
    if len(data["labels"]) < 2:
        raise ValueError(f"{path} was trained on one style ({data['labels'][0]}); style evaluation needs a styles build")
    torch.manual_seed(cfg.train.seed)
    untrained_g, _ = build_models(cfg.model, data["example_shape"], data["bars"], len(data["labels"]))
    report = evaluate_generator(g, untrained_g, data, ShardReader(data_dir, split="val").arrays(),
                                ShardReader(data_dir, split="train").arrays(), n_per_style, seed)
    return {"checkpoint": str(path), "step": meta["step"], "data": str(data_dir), **report}


def evaluate_generator(g, untrained_g, data: dict, val: dict, train: dict, n_per_style: int = 256,
                       seed: int = 0) -> dict:
    """The style report for generator ``g`` (``untrained_g``: the FMD ratio's floor) against a build's
    ``val`` and ``train`` arrays (``x``, ``label``, ``source``); ``data`` is the checkpoint's data dict."""
    import torch

    from musicgan.evaluate import Reference, judge
    from musicgan.gan import generate

    labels = list(data["labels"])
    spb, low, names = data["steps_per_bar"], data["pitch_low"], data["track_names"]
    generated, real, report_styles = {}, {}, {}
    for s, name in enumerate(labels):
        rows, train_rows = val["label"] == s, train["label"] == s
        if rows.sum() < FOLDS or train_rows.sum() < 2:
            report_styles[name] = {"skipped": f"{int(rows.sum())} held-out, {int(train_rows.sum())} training phrases"}
            continue
        style_labels = torch.full((n_per_style,), s, dtype=torch.long)
        generated[s] = generate(g, n_per_style, seed=seed, labels=style_labels).numpy()
        real[s] = val["x"][rows] > 0
        ref = Reference(real[s], train["x"][train_rows] > 0, spb, low, names, n_per_style,
                        real_groups=val["source"][rows], train_groups=train["source"][train_rows], seed=seed)
        res = ref.measure(generated[s], untrained=generate(untrained_g, n_per_style, seed=seed,
                                                            labels=style_labels).numpy())
        checks = judge(res)
        report_styles[name] = {"held_out": int(rows.sum()), "FMD_ratio": res.get("FMD_ratio"),
                               "diversity": res["diversity"], "copies": res["copies"],
                               "checks": {k: bool(c["ok"]) for k, c in checks.items()},
                               "targets_met": int(sum(c["ok"] for c in checks.values())), "targets": len(checks),
                               "metrics": res}
    styles = sorted(generated)
    mask = np.isin(val["label"], styles)
    real_x = _features(val["x"][mask] > 0, spb, low)
    real_y = np.searchsorted(styles, val["label"][mask])  # dense 0..k-1 over the styles evaluated
    ceiling = classifier_ceiling(real_x, real_y, val["source"][mask], seed=seed)
    gen_x = {i: _features(generated[s], spb, low) for i, s in enumerate(styles)}
    acc = style_accuracy(real_x, real_y, gen_x, seed=seed)
    sep = style_separation(generated, real, spb, low, names)
    return {"styles": [labels[s] for s in styles],
            "per_style": report_styles, "classifier_ceiling": ceiling, "style_accuracy": acc["accuracy"],
            "style_accuracy_per_style": {labels[styles[i]]: v for i, v in acc["per_style"].items()},
            "confusion": acc["confusion"],
            "style_accuracy_of_ceiling": acc["accuracy"] / ceiling if ceiling > 0 else None,
            "separation": {f"{labels[a]}/{labels[b]}": v for (a, b), v in sep["pairs"].items()},
            "separation_min": sep["min_ratio"]}
