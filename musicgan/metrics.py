"""Music-quality metrics for pianoroll phrases: offline, no downloaded weights.

Every function takes binary rolls ``[N, tracks, steps, pitches]`` (numpy, any dtype; > 0 means
sounding) plus the grid, and returns plain floats or per-track lists. Definitions:

- **EB** empty-bar rate: fraction of (phrase, bar) pairs in which a track plays nothing.
- **UPC** used pitch classes: distinct pitch classes a track uses in a bar, averaged over the bars
  in which it plays.
- **QN** qualified-note rate: fraction of notes lasting at least ``min_note_steps`` steps. On the
  default 16-steps-per-bar grid that is 2 steps, an eighth note. A note is a maximal run of one
  pitch (the roll has no onsets, so a repeated pitch counts as one longer note).
- **polyphony**: fraction of sounding steps at which at least ``min_pitches`` (3) distinct pitches
  sound across all tracks (a chord).
- **pitch range**: per track, highest minus lowest pitch in a phrase, in semitones, averaged over
  the phrases in which the track plays.
- **in-scale**: fraction of sounding (step, pitch) cells inside the best-fitting diatonic (major /
  natural minor) scale of their phrase.
- **TD** tonal distance (Harte et al., 2006): per bar, the Euclidean distance between two tracks'
  6-D tonal centroids, averaged over bars where both play; one value per track pair.
- **diversity**: mean pairwise Hamming distance among generated phrases divided by the same among
  real phrases (1.0 = as varied as the data; near 0 = mode collapse).
- **Fréchet music-statistics distance (FMD)**: Fréchet distance between Gaussians fitted to the
  per-phrase statistics vector of :func:`statistics_vector` for real and generated phrases.
- **originality / copies**: fraction of generated phrases whose nearest training phrase shares more
  than 90% of its sounding cells (``|g & t| / max(|g|, |t|) > 0.9``).

Drums. When the data has a track named ``drums`` (a band build, ``track_mode="program"``), its
pitches name drums, not notes, so the tonal measures skip it, as MuseGAN's tables do: UPC, QN,
pitch range, polyphony, in-scale, TD, the voice measures, and the pitch-class and interval parts of
the FMD vector. EB still counts it, and it gets its own measure:

- **DP** drum-pattern rate (Dong et al., "MuseGAN", AAAI 2018, Table 1: "ratio of notes in 8- or
  16-beat patterns, common ones for Rock songs in 4/4 time"), as MuseGAN's code computes it
  (``musegan/metrics``: ``drum_in_pattern_rate``, tolerance 0.1): every sounding drum cell weighs 1
  on the pattern grid, ``tolerance`` one step off it and 0 elsewhere; DP is the weighted count over
  all drum cells. The grid is sixteenth notes when a sixteenth spans two or more steps (32, 48, 64,
  96 steps per bar), else eighth notes (16 and 24 steps per bar: on the default 16-step grid the
  eighths weigh 1 and the off-beat sixteenths 0.1), else quarter notes (an extension for grids
  MuseGAN did not use, such as 12 steps per bar). Positions count from each phrase's first step,
  a downbeat. 0.0 when no drum sounds.

Voice measures (tracks are voices ordered high to low, soprano alto tenor bass in the Bach build).
A voice's pitch at a step is the highest pitch it sounds there (a Bach voice sounds one at a time;
a generated one may sound several). Voice leading is read at quarter-note beats, every
``steps_per_bar / 4`` steps from the phrase's first step (a downbeat). Values on the ``bach``
build's val split (621 phrases; train in brackets):

- **melodic leap**: mean absolute interval, in semitones, between consecutive notes of a voice in a
  phrase. Rests are skipped and a held or repeated pitch is one note (the roll has no onsets), so
  every leap is non-zero. ``leap_semitones`` pools all voices' leaps: 2.59 (2.60).
- **octave leaps**: share of those leaps larger than 12 semitones: 0.066% (0.054%).
- **pitch range**: :func:`pitch_range` above: 10.0 semitones (10.1).
- **parallel fifths and octaves**, per 100 voice-pair transitions: over every pair of voices (all
  six in SATB, not only adjacent ones), a transition is two consecutive beats at which both voices
  sound. It is a parallel when both voices move (neither holds nor repeats its pitch) in the same
  direction and their interval ``|upper - lower| mod 12`` is 7 at both beats (fifths, compound
  included) or 0 at both (unisons and octaves). A fifth moving to an octave is not counted. The
  denominator is all transitions, moving or not: 0.42 (0.30). With only adjacent pairs it would be
  0.34 (0.33); counting only similar-motion transitions in the denominator, 1.54 (1.12).
- **crossing**: share of (adjacent voice pair, beat) cells, both sounding, at which the lower voice
  sounds strictly above the higher one (a unison is not a crossing): 0.81% (0.67%).
- **spacing**: share of the same (adjacent pair, beat) cells at which two upper voices
  (soprano-alto, alto-tenor; every adjacent pair above the lowest voice) are more than 12 semitones
  apart; tenor-bass cells may be wider and never count as wide: 0.40% (0.49%). Over upper-pair
  cells alone it would be 0.60%.
- **vertical intervals**: per voice pair, the distribution of interval classes ``|upper - lower|
  mod 12`` at beats where both sound; generated is compared with real by the total-variation
  distance (half the L1 distance, 0 same, 1 disjoint), averaged over pairs. Bach train against
  val: 0.033, the data's own floor.
"""

from __future__ import annotations

import numpy as np

DIATONIC = np.array([0, 2, 4, 5, 7, 9, 11])
DRUM_TRACK = "drums"
DP_TOLERANCE = 0.1
MIN_NOTE_STEPS = 2
CHORD_PITCHES = 3
COPY_OVERLAP = 0.9
# The seed of the phrases the in-training evaluation generates, and of the untrained baseline it is
# compared with: the same noise at every evaluation, so a change in FMD is a change in the generator.
EVAL_SEED = 1234


def _bool(rolls) -> np.ndarray:
    rolls = np.asarray(rolls)
    return rolls if rolls.dtype == bool else rolls > 0


def chroma(rolls: np.ndarray, pitch_low: int) -> np.ndarray:
    """``[..., pitches]`` -> ``[..., 12]`` counts per pitch class."""
    n_p = rolls.shape[-1]
    out = np.zeros(rolls.shape[:-1] + (12,), np.float64)
    for pc in range(12):
        idx = [i for i in range(n_p) if (pitch_low + i) % 12 == pc]
        out[..., pc] = rolls[..., idx].sum(-1)
    return out


def bars_view(rolls: np.ndarray, steps_per_bar: int) -> np.ndarray:
    n, t, s, p = rolls.shape
    return rolls.reshape(n, t, s // steps_per_bar, steps_per_bar, p)


def empty_bar_rate(rolls, steps_per_bar: int) -> list[float]:
    bars = bars_view(_bool(rolls), steps_per_bar).any(axis=(3, 4))  # [N, T, bars]
    return (~bars).mean(axis=(0, 2)).tolist()


def used_pitch_classes(rolls, steps_per_bar: int, pitch_low: int) -> list[float]:
    bars = bars_view(_bool(rolls), steps_per_bar)
    pcs = chroma(bars.any(axis=3), pitch_low) > 0  # [N, T, bars, 12]
    count = pcs.sum(-1)
    playing = count > 0
    return [float(count[:, t][playing[:, t]].mean()) if playing[:, t].any() else 0.0 for t in range(count.shape[1])]


def note_lengths(track_rolls: np.ndarray) -> np.ndarray:
    """Lengths (in steps) of every note in ``[N, steps, pitches]``: maximal runs of one pitch."""
    r = _bool(track_rolls).astype(np.int8)
    padded = np.pad(r, ((0, 0), (1, 1), (0, 0)))
    d = np.diff(padded, axis=1)  # [N, steps+1, P]
    starts = np.argwhere(d == 1)
    ends = np.argwhere(d == -1)
    # argwhere sorts by (n, step, pitch); sort both by (n, pitch, step) so runs pair up
    so = np.lexsort((starts[:, 1], starts[:, 2], starts[:, 0]))
    eo = np.lexsort((ends[:, 1], ends[:, 2], ends[:, 0]))
    return ends[eo, 1] - starts[so, 1]


def qualified_note_rate(rolls, min_note_steps: int = MIN_NOTE_STEPS) -> list[float]:
    rolls = _bool(rolls)
    out = []
    for t in range(rolls.shape[1]):
        lengths = note_lengths(rolls[:, t])
        out.append(float((lengths >= min_note_steps).mean()) if lengths.size else 0.0)
    return out


def polyphony_rate(rolls, min_pitches: int = CHORD_PITCHES) -> float:
    per_step = _bool(rolls).any(axis=1).sum(-1)  # distinct pitches sounding per step, [N, steps]
    sounding = per_step > 0
    return float((per_step[sounding] >= min_pitches).mean()) if sounding.any() else 0.0


def pitch_range(rolls) -> list[float]:
    rolls = _bool(rolls)
    out = []
    for t in range(rolls.shape[1]):
        used = rolls[:, t].any(axis=1)  # [N, P]
        playing = used.any(axis=1)
        if not playing.any():
            out.append(0.0)
            continue
        p = np.arange(used.shape[1])
        hi = np.where(used, p, -1).max(1)
        lo = np.where(used, p, 10**6).min(1)
        out.append(float((hi - lo)[playing].mean()))
    return out


def _scale_masks() -> np.ndarray:
    masks = np.zeros((12, 12), bool)
    for key in range(12):
        masks[key, (DIATONIC + key) % 12] = True
    return masks  # natural minor keys share these seven-note sets with their relative majors


def in_scale_rate(rolls, pitch_low: int) -> float:
    pcs = chroma(_bool(rolls).sum(axis=(1, 2)).astype(np.float64), pitch_low)  # [N, 12] cell counts
    total = pcs.sum(1)
    inside = pcs @ _scale_masks().T.astype(np.float64)  # [N, 12 keys]
    best = inside.max(1)
    keep = total > 0
    return float(best[keep].sum() / total[keep].sum()) if keep.any() else 0.0


def drum_pattern_mask(steps_per_bar: int, tolerance: float = DP_TOLERANCE) -> np.ndarray:
    """``[steps_per_bar]`` weight of a drum hit at each step of a bar (see DP in the module docstring)."""
    if steps_per_bar < 1 or steps_per_bar % QUARTERS_PER_BAR:
        raise ValueError(f"steps_per_bar must be a positive multiple of {QUARTERS_PER_BAR}, not {steps_per_bar}")
    if steps_per_bar % 16 == 0 and steps_per_bar >= 32:
        period = steps_per_bar // 16  # sixteenth notes
    elif steps_per_bar % 8 == 0:
        period = steps_per_bar // 8  # eighth notes
    else:
        period = steps_per_bar // QUARTERS_PER_BAR
    offset = np.arange(steps_per_bar) % period
    mask = np.where(offset == 0, 1.0, 0.0)
    if period > 1:
        mask[(offset == 1) | (offset == period - 1)] = tolerance
    return mask


def drum_pattern_rate(drum_rolls, steps_per_bar: int, tolerance: float = DP_TOLERANCE) -> float:
    """DP of drum rolls ``[N, steps, pitches]``: the share of drum cells on the 8th- or 16th-note
    pattern, off-grid neighbours counting ``tolerance`` (MuseGAN's definition; module docstring)."""
    cells = _bool(drum_rolls).sum(-1)  # sounding drums per step, [N, steps]
    total = cells.sum()
    if total == 0:
        return 0.0
    mask = drum_pattern_mask(steps_per_bar, tolerance)
    weight = mask[np.arange(cells.shape[1]) % steps_per_bar]
    return float((cells * weight).sum() / total)


def drum_index(track_names: list[str] | None) -> int | None:
    """Index of the drum track (named :data:`DRUM_TRACK`), or None."""
    names = list(track_names or [])
    return names.index(DRUM_TRACK) if DRUM_TRACK in names else None


def _pitched(rolls: np.ndarray, track_names: list[str] | None) -> tuple[np.ndarray, list]:
    """``rolls`` and ``track_names`` without the drum track (both unchanged when there is none)."""
    drum = drum_index(track_names)
    if drum is None:
        return rolls, list(track_names or [])
    keep = [t for t in range(rolls.shape[1]) if t != drum]
    return rolls[:, keep], [track_names[t] for t in keep]


def _tonal_centroid(chroma_vec: np.ndarray) -> np.ndarray:
    """Harte et al. (2006): project normalised chroma ``[..., 12]`` onto 6 tonal dimensions."""
    l = np.arange(12)
    phi = np.stack([
        np.sin(l * 7 * np.pi / 6), np.cos(l * 7 * np.pi / 6),
        np.sin(l * 3 * np.pi / 2), np.cos(l * 3 * np.pi / 2),
        0.5 * np.sin(l * 2 * np.pi / 3), 0.5 * np.cos(l * 2 * np.pi / 3),
    ])  # [6, 12]
    norm = np.abs(chroma_vec).sum(-1, keepdims=True)
    return (chroma_vec / np.maximum(norm, 1e-12)) @ phi.T


def tonal_distance(rolls, steps_per_bar: int, pitch_low: int) -> dict[str, float]:
    bars = bars_view(_bool(rolls), steps_per_bar).sum(axis=3)  # [N, T, bars, P]
    ch = chroma(bars, pitch_low)  # [N, T, bars, 12]
    tc = _tonal_centroid(ch)
    playing = ch.sum(-1) > 0
    out = {}
    t = ch.shape[1]
    for i in range(t):
        for j in range(i + 1, t):
            both = playing[:, i] & playing[:, j]
            d = np.linalg.norm(tc[:, i] - tc[:, j], axis=-1)
            out[f"{i}-{j}"] = float(d[both].mean()) if both.any() else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# distribution-level metrics


def statistics_vector(rolls, steps_per_bar: int, pitch_low: int, track_names: list[str] | None = None) -> np.ndarray:
    """The fixed per-phrase statistics vector behind FMD, ``[N, 12 + 25 + 6 * tracks + 1]``:

    1. pitch-class histogram of all sounding cells (12, sums to 1);
    2. melodic-interval histogram between consecutive notes within each track, -12..+12 semitones
       with larger leaps clipped to the ends (25, sums to 1);
    3. per track: sounding-step fraction, mean pitch / pitches, empty-bar rate, used pitch classes
       per bar / 12, qualified-note rate, pitch range / pitches (6 each);
    4. polyphony rate of the phrase (1).

    With a drum track among ``track_names``, parts 1, 2 and 4 skip it (its pitches are drums);
    part 3 keeps it (there the numbers say which drums play and how densely), and the phrase's
    drum-pattern rate is appended (one more column).
    """
    rolls = _bool(rolls)
    n, t, s, p = rolls.shape
    drum = drum_index(track_names)
    pitched = rolls if drum is None else _pitched(rolls, track_names)[0]
    pc = chroma(pitched.sum(axis=(1, 2)).astype(np.float64), pitch_low)
    pc /= np.maximum(pc.sum(1, keepdims=True), 1)
    iv = np.zeros((n, 25))
    per_track = np.zeros((n, t, 6))
    pitches = np.arange(p)
    for k in range(t):
        r = rolls[:, k]  # [N, S, P]
        sounding = r.any(-1)
        top = np.where(sounding, np.where(r, pitches, -1).max(-1), -1)  # highest pitch per step
        for i in range(n if k != drum else 0):
            seq = top[i][top[i] >= 0]
            if seq.size > 1:
                change = np.diff(seq)
                change = change[change != 0]
                np.add.at(iv[i], np.clip(change, -12, 12) + 12, 1)
        per_track[:, k, 0] = sounding.mean(1)
        cells = r.sum((1, 2))
        per_track[:, k, 1] = np.where(cells > 0, (r * pitches).sum((1, 2)) / np.maximum(cells, 1), 0) / p
        one = rolls[:, k : k + 1]
        bars = bars_view(one, steps_per_bar)
        per_track[:, k, 2] = (~bars.any(axis=(3, 4))).mean(axis=(1, 2))
        bar_pcs = (chroma(bars.any(axis=3), pitch_low) > 0).sum(-1)[:, 0]  # [N, bars]
        played = bar_pcs > 0
        per_track[:, k, 3] = np.where(played.any(1), bar_pcs.sum(1) / np.maximum(played.sum(1), 1), 0) / 12
        for i in range(n):
            lengths = note_lengths(r[i : i + 1])
            per_track[i, k, 4] = (lengths >= MIN_NOTE_STEPS).mean() if lengths.size else 0.0
        used = r.any(1)
        hi = np.where(used, pitches, -1).max(1)
        lo = np.where(used, pitches, p).min(1)
        per_track[:, k, 5] = np.where(used.any(1), hi - lo, 0) / p
    iv /= np.maximum(iv.sum(1, keepdims=True), 1)
    per_step = pitched.any(axis=1).sum(-1)
    sounding_steps = np.maximum((per_step > 0).sum(1), 1)
    poly = ((per_step >= CHORD_PITCHES).sum(1) / sounding_steps)[:, None]
    parts = [pc, iv, per_track.reshape(n, -1), poly]
    if drum is not None:
        parts.append(np.array([[drum_pattern_rate(rolls[i : i + 1, drum], steps_per_bar)] for i in range(n)]))
    return np.concatenate(parts, 1)


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.cov(a, rowvar=False) + eps * np.eye(a.shape[1])
    s2 = np.cov(b, rowvar=False) + eps * np.eye(b.shape[1])
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def mean_pairwise_hamming(rolls, max_items: int = 512, seed: int = 0) -> float:
    x = _bool(rolls).reshape(len(rolls), -1)
    if len(x) > max_items:
        x = x[np.random.default_rng(seed).choice(len(x), max_items, replace=False)]
    f = x.astype(np.float32)
    ones = f.sum(1)
    dist = ones[:, None] + ones[None, :] - 2 * (f @ f.T)
    n = len(f)
    return float(dist[~np.eye(n, dtype=bool)].mean()) if n > 1 else 0.0


def diversity_ratio(generated, real, max_items: int = 512) -> float:
    real_d = mean_pairwise_hamming(real, max_items)
    return mean_pairwise_hamming(generated, max_items) / real_d if real_d > 0 else 0.0


def copy_rate(generated, train, overlap: float = COPY_OVERLAP, chunk: int = 2048) -> float:
    """Fraction of generated phrases with a training phrase sharing more than ``overlap`` of its cells."""
    g = _bool(generated).reshape(len(generated), -1).astype(np.float32)
    g_cells = g.sum(1)
    best = np.zeros(len(g))
    tr = _bool(train).reshape(len(train), -1)
    for i in range(0, len(tr), chunk):
        t = tr[i : i + chunk].astype(np.float32)
        shared = g @ t.T  # [G, chunk]
        denom = np.maximum(np.maximum(g_cells[:, None], t.sum(1)[None, :]), 1)
        best = np.maximum(best, (shared / denom).max(1))
    return float((best > overlap).mean())


# ---------------------------------------------------------------------------------------------
# the table


def phrase_metrics(rolls, steps_per_bar: int, pitch_low: int, track_names: list[str]) -> dict[str, float]:
    """Per-set metrics as a flat dict (per-track values are averaged, and also given per track).

    A ``drums`` track counts in EB and gets ``DP``; the other measures skip it (module docstring)."""
    drum = drum_index(track_names)
    eb = empty_bar_rate(rolls, steps_per_bar)
    pitched, names = _pitched(rolls, track_names)
    upc = used_pitch_classes(pitched, steps_per_bar, pitch_low)
    qn = qualified_note_rate(pitched)
    pr = pitch_range(pitched)
    td = tonal_distance(pitched, steps_per_bar, pitch_low)
    out = {
        "EB": float(np.mean(eb)), "UPC": float(np.mean(upc)) if upc else 0.0, "QN": float(np.mean(qn)) if qn else 0.0,
        "polyphony": polyphony_rate(pitched), "pitch_range": float(np.mean(pr)) if pr else 0.0,
        "in_scale": in_scale_rate(pitched, pitch_low), "TD": float(np.mean(list(td.values()))) if td else 0.0,
    }
    if drum is not None:
        out["DP"] = drum_pattern_rate(_bool(rolls)[:, drum], steps_per_bar)
    for name, value in zip(track_names, eb):
        out[f"EB/{name}"] = value
    for i, name in enumerate(names):
        out[f"UPC/{name}"], out[f"QN/{name}"], out[f"pitch_range/{name}"] = upc[i], qn[i], pr[i]
    for pair, v in td.items():
        i, j = (int(x) for x in pair.split("-"))
        out[f"TD/{names[i]}-{names[j]}"] = v
    return out


def compare(generated, real, train, steps_per_bar: int, pitch_low: int, track_names: list[str],
            untrained: np.ndarray | None = None) -> dict:
    """Everything ``musicgan evaluate`` reports: per-set metrics for both, plus the distribution metrics."""
    gen_m = phrase_metrics(generated, steps_per_bar, pitch_low, track_names)
    real_m = phrase_metrics(real, steps_per_bar, pitch_low, track_names)
    real_stats = statistics_vector(real, steps_per_bar, pitch_low, track_names)
    result = {
        "generated": gen_m, "real": real_m,
        "FMD": frechet_distance(statistics_vector(generated, steps_per_bar, pitch_low, track_names), real_stats),
        "diversity": diversity_ratio(generated, real),
        "copies": copy_rate(generated, train) if train is not None and len(train) else None,
    }
    if untrained is not None:
        result["FMD_untrained"] = frechet_distance(statistics_vector(untrained, steps_per_bar, pitch_low, track_names),
                                                   real_stats)
    return result


# ---------------------------------------------------------------------------------------------
# voices: melodic leaps and voice leading (see the module docstring's second list)

OCTAVE_SEMITONES = 12
QUARTERS_PER_BAR = 4
PERFECT_INTERVAL_CLASSES = (0, 7)  # unison/octave, fifth


def voice_lines(rolls) -> np.ndarray:
    """``[N, tracks, steps]`` int: each voice's highest sounding pitch index per step, -1 where silent."""
    rolls = _bool(rolls)
    p = rolls.shape[-1]
    return np.where(rolls, np.arange(p), -1).max(-1) if p else np.full(rolls.shape[:-1], -1)


def beat_lines(rolls, steps_per_bar: int) -> np.ndarray:
    """:func:`voice_lines` sampled at quarter-note beats (every ``steps_per_bar / 4`` steps from step 0)."""
    if steps_per_bar % QUARTERS_PER_BAR:
        raise ValueError(f"steps_per_bar must be a multiple of {QUARTERS_PER_BAR} to find quarter-note beats, "
                         f"not {steps_per_bar}")
    return voice_lines(rolls)[..., :: steps_per_bar // QUARTERS_PER_BAR]


def _leaps(line: np.ndarray) -> np.ndarray:
    """Signed semitone steps between consecutive notes of one voice ``[N, steps]`` (-1 silent), per phrase.

    Rests are skipped (the note after a rest follows the note before it) and a held or repeated
    pitch is one note, so every leap is non-zero."""
    n_idx, s_idx = np.nonzero(line >= 0)  # row-major: by phrase, then step
    pitch = line[n_idx, s_idx]
    change = np.diff(pitch)[n_idx[1:] == n_idx[:-1]]
    return change[change != 0]


def voice_leaps(rolls) -> list[np.ndarray]:
    """Per track: absolute melodic leaps in semitones between consecutive notes, all phrases pooled."""
    lines = voice_lines(rolls)
    return [np.abs(_leaps(lines[:, t])) for t in range(lines.shape[1])]


def melodic_leap_semitones(rolls) -> list[float]:
    """Per track: mean absolute melodic leap in semitones, over all leaps of all phrases (0.0 if none)."""
    return [float(leaps.mean()) if leaps.size else 0.0 for leaps in voice_leaps(rolls)]


def octave_leap_rate(rolls) -> list[float]:
    """Per track: share of melodic leaps larger than an octave (more than 12 semitones; 0.0 if none)."""
    return [float((leaps > OCTAVE_SEMITONES).mean()) if leaps.size else 0.0 for leaps in voice_leaps(rolls)]


def _pairs(n_tracks: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n_tracks) for j in range(i + 1, n_tracks)]


def parallel_counts(beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per phrase, from :func:`beat_lines`: (parallel fifths/octaves, voice-pair transitions); see
    :func:`parallel_perfect_per_100`."""
    parallels = np.zeros(len(beats), np.int64)
    transitions = np.zeros(len(beats), np.int64)
    for i, j in _pairs(beats.shape[1]):
        a, b = beats[:, i], beats[:, j]
        both = (a[:, :-1] >= 0) & (a[:, 1:] >= 0) & (b[:, :-1] >= 0) & (b[:, 1:] >= 0)
        ic = np.abs(a - b) % 12
        same_class = (ic[:, :-1] == ic[:, 1:]) & np.isin(ic[:, 1:], PERFECT_INTERVAL_CLASSES)
        move_a, move_b = np.sign(np.diff(a)), np.sign(np.diff(b))
        similar = (move_a != 0) & (move_a == move_b)
        parallels += (both & similar & same_class).sum(-1)
        transitions += both.sum(-1)
    return parallels, transitions


def parallel_perfect_per_100(rolls, steps_per_bar: int) -> float:
    """Parallel fifths and octaves per 100 voice-pair transitions between consecutive quarter-note beats.

    Over every pair of voices (not only adjacent ones), a *transition* is two consecutive beats at
    which both voices sound. It is a parallel when both voices move in the same direction and the
    interval between them, ``|upper - lower| mod 12``, is a fifth (7) at both beats or a unison or
    octave (0) at both beats."""
    parallels, transitions = parallel_counts(beat_lines(rolls, steps_per_bar))
    return float(100.0 * parallels.sum() / transitions.sum()) if transitions.sum() else 0.0


def adjacent_pair_counts(beats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per phrase, from :func:`beat_lines`: (crossed cells, widely spaced upper cells, cells) over
    (adjacent voice pair, beat) cells where both voices sound; see :func:`voice_crossing_rate` and
    :func:`upper_spacing_rate`."""
    crossed = np.zeros(len(beats), np.int64)
    wide = np.zeros(len(beats), np.int64)
    both = np.zeros(len(beats), np.int64)
    n_tracks = beats.shape[1]
    for k in range(n_tracks - 1):
        hi, lo = beats[:, k], beats[:, k + 1]
        sounding = (hi >= 0) & (lo >= 0)
        both += sounding.sum(-1)
        crossed += (sounding & (lo > hi)).sum(-1)
        if k + 1 < n_tracks - 1:
            wide += (sounding & (np.abs(hi - lo) > OCTAVE_SEMITONES)).sum(-1)
    return crossed, wide, both


def voice_crossing_rate(rolls, steps_per_bar: int) -> float:
    """Share of (adjacent voice pair, quarter-note beat) cells, both voices sounding, where the lower
    voice (the later track) sounds strictly above the higher one. Track order is high to low."""
    crossed, _, both = adjacent_pair_counts(beat_lines(rolls, steps_per_bar))
    return float(crossed.sum() / both.sum()) if both.sum() else 0.0


def upper_spacing_rate(rolls, steps_per_bar: int) -> float:
    """Share of (adjacent voice pair, quarter-note beat) cells, both voices sounding, that break the
    spacing rule: two upper voices (an adjacent pair above the lowest voice: soprano-alto, alto-tenor
    in SATB) more than an octave (12 semitones) apart. The lowest pair (tenor-bass) may lie wider:
    its cells never break the rule but count in the denominator, which is the same as
    :func:`voice_crossing_rate`'s."""
    _, wide, both = adjacent_pair_counts(beat_lines(rolls, steps_per_bar))
    return float(wide.sum() / both.sum()) if both.sum() else 0.0


def vertical_interval_histograms(rolls, steps_per_bar: int) -> np.ndarray:
    """``[pairs, 12]``: per voice pair (all pairs, in :func:`tonal_distance`'s order), the distribution of
    the interval class ``|upper - lower| mod 12`` over quarter-note beats where both sound (rows sum
    to 1, or are all 0 when a pair never sounds together)."""
    beats = beat_lines(rolls, steps_per_bar)
    pairs = _pairs(beats.shape[1])
    out = np.zeros((len(pairs), 12))
    for row, (i, j) in enumerate(pairs):
        a, b = beats[:, i], beats[:, j]
        ic = (np.abs(a - b) % 12)[(a >= 0) & (b >= 0)]
        counts = np.bincount(ic, minlength=12).astype(np.float64)
        out[row] = counts / counts.sum() if counts.sum() else counts
    return out


def vertical_interval_distance(generated, real, steps_per_bar: int, track_names: list[str] | None = None) -> float:
    """Total-variation distance (half the L1 distance, 0 = same, 1 = disjoint) between generated and
    real :func:`vertical_interval_histograms`, averaged over voice pairs; a ``drums`` track among
    ``track_names`` is left out."""
    generated, real = _pitched(_bool(generated), track_names)[0], _pitched(_bool(real), track_names)[0]
    g = vertical_interval_histograms(generated, steps_per_bar)
    r = vertical_interval_histograms(real, steps_per_bar)
    if g.shape != r.shape:
        raise ValueError(f"generated and real phrases have different track counts ({g.shape[0]} vs {r.shape[0]} pairs)")
    return float(0.5 * np.abs(g - r).sum(1).mean()) if len(g) else 0.0


def voice_metrics(rolls, steps_per_bar: int, track_names: list[str]) -> dict[str, float]:
    """The voice measures as a flat dict. ``leap_semitones`` and ``octave_leaps`` pool the leaps of all
    voices (so a voice weighs by its number of leaps); per-voice values follow as ``<name>/<voice>``.
    :func:`pitch_range` is in :func:`phrase_metrics` already. A ``drums`` track is left out."""
    rolls, track_names = _pitched(_bool(rolls), track_names)
    per_voice = voice_leaps(rolls)
    pooled = np.concatenate(per_voice) if per_voice else np.zeros(0)
    out = {
        "leap_semitones": float(pooled.mean()) if pooled.size else 0.0,
        "octave_leaps": float((pooled > OCTAVE_SEMITONES).mean()) if pooled.size else 0.0,
        "parallels_per_100": parallel_perfect_per_100(rolls, steps_per_bar),
        "crossing": voice_crossing_rate(rolls, steps_per_bar),
        "spacing": upper_spacing_rate(rolls, steps_per_bar),
    }
    for name, leaps in zip(track_names, per_voice):
        out[f"leap_semitones/{name}"] = float(leaps.mean()) if leaps.size else 0.0
        out[f"octave_leaps/{name}"] = float((leaps > OCTAVE_SEMITONES).mean()) if leaps.size else 0.0
    return out
