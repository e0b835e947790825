"""Measures for the creation assistant's tasks: harmonize a melody, continue a prompt, write long pieces.

Plain numpy on bool rolls ``[N, tracks, steps, pitches]`` (pitch index ``p`` is MIDI ``pitch_low + p``),
built on :mod:`musicgan.metrics` so that a word means the same thing in both places: a voice's line is
:func:`~musicgan.metrics.voice_lines`, a leap is what :func:`~musicgan.metrics.melodic_leap_semitones`
counts, a key's scale is :func:`~musicgan.metrics._scale_masks`, a beat is a quarter note
(``steps_per_bar / 4`` steps) from step 0.

- **chord agreement**: per (phrase, beat), the Jaccard overlap of the pitch classes sounding at the
  beat's first step in the generated and the reference phrase (0..1).
- **keys**: the best-fit diatonic key (major tonic 0..11; a natural minor counts as its relative
  major) of a phrase, a window or a half; agreement between two sets, between a phrase's halves, and
  how often a long piece changes key from one window to the next.
- **seams**: the leap a voice makes across the boundary where one generated phrase meets the next,
  against its leaps elsewhere (``seam_smoothness``; Bach's own is about 1).
- **spread**: how different K harmonizations of one melody are, with a real-data reference.
- **out of range** and a **random baseline** (random in-key notes, one per beat, in each missing voice).

A measure with nothing to measure (no sounding beat, no key, no leap) is ``nan``, not 0: 0 would read
as a result ("never agrees", "perfectly smooth").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicgan.metrics import QUARTERS_PER_BAR, _bool, _scale_masks, chroma, voice_lines

# Krumhansl & Kessler (1982) major-key profile, from the tonic up by semitone: how well each pitch
# class fits a major key. Used only to break ties between keys whose scales hold the same weight.
KK_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
NO_KEY = -1
# Pairs of different real phrases drawn for spread_reference (enough for a stable mean, fast on 2 cores).
REFERENCE_PAIRS = 2048


def _beat_steps(steps_per_bar: int) -> int:
    if steps_per_bar <= 0 or steps_per_bar % QUARTERS_PER_BAR:
        raise ValueError(f"steps_per_bar must be a positive multiple of {QUARTERS_PER_BAR} to find "
                         f"quarter-note beats, not {steps_per_bar}")
    return steps_per_bar // QUARTERS_PER_BAR


def _check_rolls(rolls, name: str = "rolls") -> np.ndarray:
    rolls = _bool(rolls)
    if rolls.ndim != 4:
        raise ValueError(f"{name} must be [N, tracks, steps, pitches], got shape {rolls.shape}")
    return rolls


def _nan_or(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


# ---------------------------------------------------------------------------------------------
# chords


def beat_pitch_classes(rolls, steps_per_bar: int, pitch_low: int, tracks: Sequence[int] | None = None) -> np.ndarray:
    """``[N, beats, 12]`` bool: the pitch classes sounding at each quarter-note beat's first step, over
    all tracks (or ``tracks``). Read at the beat's first step as :func:`~musicgan.metrics.beat_lines`
    reads voices, so a passing note between beats does not blur the chord."""
    rolls = _check_rolls(rolls)
    if tracks is not None:
        rolls = rolls[:, list(tracks)]
    at_beats = rolls[:, :, :: _beat_steps(steps_per_bar)].any(axis=1)  # [N, beats, P]
    return chroma(at_beats, pitch_low) > 0


def chord_agreement(generated, reference, steps_per_bar: int, pitch_low: int) -> float:
    """Mean Jaccard overlap ``|A & B| / |A | B|`` of the beat pitch-class sets of ``generated[i]`` and
    ``reference[i]``, over (phrase, beat) pairs where either set is non-empty (0..1; ``nan`` if none).

    For harmonization: generated = the given soprano plus the generated alto, tenor and bass,
    reference = Bach's phrase with that soprano. Both share the soprano, so a chance harmony already
    scores above 0; compare with the random baseline (:func:`random_baseline`)."""
    g = _check_rolls(generated, "generated")
    r = _check_rolls(reference, "reference")
    if g.shape != r.shape:
        raise ValueError(f"generated and reference must have the same shape, got {g.shape} and {r.shape}")
    a = beat_pitch_classes(g, steps_per_bar, pitch_low)
    b = beat_pitch_classes(r, steps_per_bar, pitch_low)
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    some = union > 0
    return float((inter[some] / union[some]).mean()) if some.any() else float("nan")


# ---------------------------------------------------------------------------------------------
# keys


def _key_profiles() -> np.ndarray:
    """``[12 keys, 12 pitch classes]``: the KK major profile rotated to each tonic."""
    pcs = np.arange(12)
    return KK_MAJOR_PROFILE[(pcs[None, :] - pcs[:, None]) % 12]


def best_key(chroma12) -> np.ndarray:
    """Best-fit diatonic key of pitch-class weights ``[..., 12]`` -> int ``[...]``.

    The key is the major tonic (0 = C .. 11 = B) whose seven-note scale holds the most weight; a
    natural minor key has its relative major's seven pitch classes, so A minor reads as 0 (C). This
    is :func:`~musicgan.metrics.in_scale_rate`'s key. Ties (a pentatonic melody fits three scales)
    are broken by the Pearson correlation of the weights with the Krumhansl-Kessler major profile
    (:data:`KK_MAJOR_PROFILE`: 6.35 2.23 3.48 2.33 4.38 4.09 2.52 5.19 2.39 3.66 2.29 2.88, tonic
    first) rotated to each tied tonic; ties left after that go to the lowest tonic. No weight
    (empty input) -> -1 (:data:`NO_KEY`). Weights must be non-negative."""
    w = np.asarray(chroma12, np.float64)
    if w.shape[-1:] != (12,):
        raise ValueError(f"best_key needs pitch-class weights [..., 12], got shape {w.shape}")
    if (w < 0).any():
        raise ValueError("best_key needs non-negative pitch-class weights")
    inside = w @ _scale_masks().T.astype(np.float64)  # [..., 12 keys]
    best = inside.max(-1, keepdims=True)
    tied = inside >= best - 1e-9 * np.maximum(best, 1.0)
    prof = _key_profiles()
    prof_z = (prof - prof.mean(1, keepdims=True)) / prof.std(1, keepdims=True)
    w_std = w.std(-1, keepdims=True)
    w_z = (w - w.mean(-1, keepdims=True)) / np.where(w_std > 0, w_std, 1.0)  # flat weights: correlation 0
    corr = w_z @ prof_z.T / 12.0  # [..., 12 keys]
    key = np.where(tied, corr, -np.inf).argmax(-1)
    return np.where(w.sum(-1) > 0, key, NO_KEY)


def phrase_keys(rolls, pitch_low: int, steps: slice | None = None) -> np.ndarray:
    """``[N]`` best key of each phrase, weighting each pitch class by its sounding (track, step) cells
    over ``steps`` (a slice of the step axis; all steps if None). -1 for a silent phrase."""
    rolls = _check_rolls(rolls)
    if steps is not None:
        rolls = rolls[:, :, steps]
    return best_key(chroma(rolls.sum(axis=(1, 2)).astype(np.float64), pitch_low))


def _agreement(ka: np.ndarray, kb: np.ndarray) -> float:
    both = (ka != NO_KEY) & (kb != NO_KEY)
    return _nan_or((ka == kb)[both].sum(), both.sum())


def key_agreement(a_rolls, b_rolls, pitch_low: int) -> float:
    """Share of phrases ``i`` whose best keys in ``a_rolls[i]`` and ``b_rolls[i]`` are the same, over
    pairs where both have a key (``nan`` if none). For continuation: a = the prompt, b = the whole
    continued phrase (or its new bars)."""
    a = _check_rolls(a_rolls, "a_rolls")
    b = _check_rolls(b_rolls, "b_rolls")
    if len(a) != len(b):
        raise ValueError(f"a_rolls and b_rolls must hold the same number of phrases, got {len(a)} and {len(b)}")
    return _agreement(phrase_keys(a, pitch_low), phrase_keys(b, pitch_low))


def halves_key_agreement(rolls, steps_per_bar: int, pitch_low: int, split_bar: int = 2) -> float:
    """Share of phrases whose bars ``[0, split_bar)`` and ``[split_bar, end)`` have the same best key:
    on real phrases, the rate a continuation of a ``split_bar``-bar prompt should reach (a real phrase
    modulates, or its halves read ambiguously, this often). ``bach`` build, 4-bar phrases split at bar
    2: 0.65 on val (0.58 on train)."""
    rolls = _check_rolls(rolls)
    bars = rolls.shape[2] // steps_per_bar
    if not 0 < split_bar < bars:
        raise ValueError(f"split_bar must be between 1 and {bars - 1} for {bars}-bar phrases, not {split_bar}")
    split = split_bar * steps_per_bar
    return _agreement(phrase_keys(rolls, pitch_low, slice(0, split)), phrase_keys(rolls, pitch_low, slice(split, None)))


# ---------------------------------------------------------------------------------------------
# seams


def _seam_leaps(rolls, seam_steps) -> tuple[np.ndarray, np.ndarray]:
    """(leaps across the seams, leaps between consecutive notes straddling no seam), in semitones,
    pooled over phrases and voices of one ``[N, T, S, P]`` batch. See :func:`seam_leap`."""
    rolls = _check_rolls(rolls)
    n, t, s, _ = rolls.shape
    seams = np.asarray(sorted(set(int(x) for x in seam_steps)), np.int64)
    if seams.size and (seams.min() <= 0 or seams.max() >= s):
        raise ValueError(f"seam steps must lie inside the phrase (1..{s - 1}), got {seam_steps}")
    lines = voice_lines(rolls).reshape(n * t, s)  # one row per (phrase, voice)
    sounding = lines >= 0
    # Every pair of consecutive sounding steps in a row: the same pairs metrics._leaps walks.
    row, step = np.nonzero(sounding)
    pitch = lines[row, step]
    same_row = row[1:] == row[:-1]
    end, start = step[:-1][same_row], step[1:][same_row]  # where the pitch changes: one note's end, the next's start
    change = np.abs(np.diff(pitch))[same_row]
    is_note_change = change != 0  # a held or repeated pitch is one note, as in melodic_leap_semitones
    straddles = ((end[:, None] < seams[None, :]) & (seams[None, :] <= start[:, None])).any(1)
    inside = change[is_note_change & ~straddles]
    # Across each seam: last pitch before it against first pitch at or after it, where both sides sound.
    across = []
    idx = np.arange(s)
    for seam in seams:
        before = np.where(sounding[:, :seam], idx[:seam], -1).max(1)
        after = np.where(sounding[:, seam:], idx[seam:], s).min(1)
        both = (before >= 0) & (after < s)
        r = np.nonzero(both)[0]
        across.append(np.abs(lines[r, after[both]] - lines[r, before[both]]))
    return (np.concatenate(across) if across else np.zeros(0, np.int64)), inside


def _pooled_seam_leaps(rolls, seam_steps) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_seam_leaps` for a batch with shared seams, or for a list of pieces ``[T, S_i, P]``
    (different lengths allowed) with one list of seam steps per piece."""
    if not isinstance(rolls, (list, tuple)):
        return _seam_leaps(rolls, seam_steps)
    if len(seam_steps) != len(rolls) or not all(isinstance(s, Sequence) or isinstance(s, np.ndarray) for s in seam_steps):
        raise ValueError(f"a list of {len(rolls)} pieces needs one list of seam steps per piece, got {seam_steps!r}")
    across, inside = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for piece, seams in zip(rolls, seam_steps):
        a, i = _seam_leaps(np.asarray(piece)[None], seams)
        across.append(a)
        inside.append(i)
    return np.concatenate(across), np.concatenate(inside)


def seam_leap(rolls, seam_steps) -> float:
    """Mean leap in semitones across the seams, over voices, phrases and seams.

    At a seam step ``s`` a voice's leap is ``|pitch of the last note sounding before s - pitch of the
    first note sounding at or after s|`` (its line is :func:`~musicgan.metrics.voice_lines`, rests
    skipped), counted where the voice sounds on both sides. A note held across ``s``, or the same
    pitch struck again after it, is one note for :func:`~musicgan.metrics.melodic_leap_semitones`;
    here it counts as a leap of 0: a seam that continues the line is a smooth seam, and leaving it
    out would hide a generator that cannot move across the seam. So this is a mean over seams, not
    over notes; :func:`inside_leap` is the note mean. ``rolls`` is ``[N, T, S, P]`` with one list of
    ``seam_steps`` for all, or a list of pieces ``[T, S_i, P]`` with one list of seam steps each."""
    across, _ = _pooled_seam_leaps(rolls, seam_steps)
    return float(across.mean()) if across.size else float("nan")


def inside_leap(rolls, seam_steps=()) -> float:
    """Mean leap in semitones between consecutive notes of a voice, leaving out each pair of notes
    that straddles a seam (the first ends before a seam step, the next starts at or after it). With no
    seams it is the pooled :func:`~musicgan.metrics.melodic_leap_semitones` (never 0: a held or
    repeated pitch is one note). Same ``rolls`` / ``seam_steps`` forms as :func:`seam_leap`."""
    _, inside = _pooled_seam_leaps(rolls, seam_steps)
    return float(inside.mean()) if inside.size else float("nan")


def seam_smoothness(rolls, seam_steps) -> float:
    """:func:`seam_leap` / :func:`inside_leap`: above 1, the voices jump where phrases meet more than
    they move elsewhere; ``nan`` without a leap on either side. Bach's own pieces, rebuilt with
    :func:`reassemble_pieces` from the ``bach`` build and cut every 4 bars: seam 2.59, inside 2.57,
    1.01 on val (47 pieces, 520 voice-seams; train 2.50 / 2.59 = 0.96). At those seams 21% of the
    voices hold or repeat their note (leap 0) and the leaps that do happen average 3.27: the zeros
    are what bring the seam mean down to the inside mean, so leaving them out would put Bach at 1.27."""
    across, inside = _pooled_seam_leaps(rolls, seam_steps)
    if not across.size or not inside.size or inside.mean() == 0:
        return float("nan")
    return float(across.mean() / inside.mean())


# ---------------------------------------------------------------------------------------------
# long pieces


def window_keys(piece, steps_per_bar: int, pitch_low: int, window_bars: int = 4) -> np.ndarray:
    """``[W]`` best keys of consecutive non-overlapping ``window_bars``-bar windows of one piece
    ``[tracks, steps, pitches]``; a trailing partial window is left out (fewer bars, a weaker key)."""
    piece = _bool(piece)
    if piece.ndim != 3:
        raise ValueError(f"piece must be [tracks, steps, pitches], got shape {piece.shape}")
    if window_bars <= 0:
        raise ValueError(f"window_bars must be positive, not {window_bars}")
    window = window_bars * steps_per_bar
    w = piece.shape[1] // window
    windows = piece[:, : w * window].reshape(piece.shape[0], w, window, piece.shape[2]).transpose(1, 0, 2, 3)
    return phrase_keys(windows, pitch_low)


def key_change_rate(pieces, steps_per_bar: int, pitch_low: int, window_bars: int = 4) -> float:
    """Share of consecutive window pairs (:func:`window_keys`) whose keys differ, pooled over pieces;
    pairs with a silent window are left out (``nan`` if no pair is left). A generator that wanders
    from key to key scores high; compare with Bach's pieces from :func:`reassemble_pieces`: 0.22 on
    the ``bach`` build's val split with 4-bar windows (0.26 on train)."""
    changed = pairs = 0
    for piece in pieces:
        k = window_keys(piece, steps_per_bar, pitch_low, window_bars)
        both = (k[:-1] != NO_KEY) & (k[1:] != NO_KEY)
        changed += int((k[:-1] != k[1:])[both].sum())
        pairs += int(both.sum())
    return _nan_or(changed, pairs)


def reassemble_pieces(x, source, start_bar, bars_per_phrase: int = 4) -> list[np.ndarray]:
    """Rebuild long pieces ``[T, steps, P]`` from overlapping phrases ``x [N, T, S, P]``.

    Held-out data holds each file's phrases at a hop of one bar (``source[i]`` the file,
    ``start_bar[i]`` the phrase's first bar), some missing. Phrases at starts ``k, k + b, k + 2b, ...``
    (``b = bars_per_phrase``) tile the music without overlap, so each unbroken such chain is a
    piece. Per file, the longest chain is taken first (ties: the earliest start), then the longest
    that overlaps nothing taken, and so on, so no bar appears twice; chains of fewer than 2 phrases
    (no seam) are dropped. Returned in order of (file, start bar). A (file, start bar) given twice
    must hold the same phrase, kept once (the ``bach`` build lists bwv281 twice); with transposed
    copies in the data, keep one transposition."""
    x = _check_rolls(x, "x")
    source = np.asarray(source, dtype=object)
    start_bar = np.asarray(start_bar)
    if not (len(x) == len(source) == len(start_bar)):
        raise ValueError(f"x, source and start_bar must have one entry per phrase, got {len(x)}, {len(source)}, "
                         f"{len(start_bar)}")
    if bars_per_phrase <= 0 or x.shape[2] % bars_per_phrase:
        raise ValueError(f"bars_per_phrase must divide the phrase's {x.shape[2]} steps, not {bars_per_phrase}")
    if len(start_bar) and not np.all(np.asarray(start_bar, np.float64) == np.round(np.asarray(start_bar, np.float64))):
        raise ValueError("start_bar must hold whole bar numbers")
    start_bar = np.asarray(start_bar, np.float64).astype(np.int64)
    pieces = []
    for name in sorted(set(source.tolist())):
        at = {}  # start bar -> row
        for i in np.nonzero(source == name)[0]:
            b = int(start_bar[i])
            if b in at and not np.array_equal(x[at[b]], x[i]):
                raise ValueError(f"file {name!r} has two different phrases at bar {b} (transposed copies?); "
                                 "pass one version of each phrase, e.g. transpose == 0")
            at.setdefault(b, i)
        chains = []  # (first bar, phrases)
        for b in sorted(at):
            if b - bars_per_phrase in at:
                continue  # not the head of a chain
            length = 1
            while b + length * bars_per_phrase in at:
                length += 1
            chains.append((b, length))
        chains.sort(key=lambda c: (-c[1], c[0]))
        taken = []
        for b, length in chains:
            end = b + length * bars_per_phrase
            if length >= 2 and all(end <= tb or b >= tb + tl * bars_per_phrase for tb, tl in taken):
                taken.append((b, length))
        for b, length in sorted(taken):
            phrases = [x[at[b + k * bars_per_phrase]] for k in range(length)]
            pieces.append(np.concatenate(phrases, axis=1))
    return pieces


# ---------------------------------------------------------------------------------------------
# spread, range, random baseline


def _generated_cells(given_mask, n: int, t: int, s: int) -> np.ndarray:
    """``[N, T, S]`` bool: the cells the model wrote (not given)."""
    if given_mask is None:
        return np.ones((n, t, s), bool)
    given = np.asarray(given_mask, bool)
    if given.shape == (t, s):
        given = np.broadcast_to(given, (n, t, s))
    if given.shape != (n, t, s):
        raise ValueError(f"given_mask must be [N, tracks, steps] = {(n, t, s)} or [tracks, steps], got {given.shape}")
    return ~given


def spread(samples, given_mask=None) -> float:
    """Diversity among K harmonizations (or continuations) of the same N inputs ``[K, N, T, S, P]``:
    the Hamming distance (number of differing (track, step, pitch) cells) between two samples of the
    same input, over the generated cells only (``given_mask [N, T, S]`` True = given), averaged over
    sample pairs and inputs. Not divided by the cell count, as
    :func:`~musicgan.metrics.mean_pairwise_hamming` is not. 0 = the same answer every time; set it
    against :func:`spread_reference` (different real phrases) and the spread of
    :func:`random_baseline` runs under different seeds (random notes)."""
    x = _bool(samples)
    if x.ndim != 5:
        raise ValueError(f"samples must be [K, N, tracks, steps, pitches], got shape {x.shape}")
    k, n, t, s, p = x.shape
    if k < 2:
        raise ValueError(f"spread needs at least 2 samples per input, got {k}")
    gen = _generated_cells(given_mask, n, t, s)[..., None]
    # Each unordered pair once: the mean over ordered pairs (mean_pairwise_hamming's) is the same.
    dist = [((x[a] ^ x[b]) & gen).sum() for a in range(k) for b in range(a + 1, k)]
    return float(np.sum(dist) / (len(dist) * n))


def spread_reference(real, given_mask=None, seed: int = 0, max_pairs: int = REFERENCE_PAIRS) -> float:
    """:func:`spread`'s distance between random pairs of *different* real phrases, over the cells
    generated in both (``given_mask`` ``[N, T, S]`` or ``[T, S]``, True = given).

    Two real phrases with different melodies are about as far apart as two plausible harmonizations
    can be, so a model's spread should sit well above 0 and below this; the random baseline
    (:func:`random_baseline` under different seeds) shows where noise lies, usually above it. Up to
    ``max_pairs`` pairs, drawn with ``numpy.random.default_rng(seed)``. ``bach`` build, soprano given
    (alto, tenor, bass cells of 4-bar phrases): 339 cells on val (340 on train)."""
    x = _check_rolls(real, "real")
    n, t, s, _ = x.shape
    if n < 2:
        raise ValueError(f"spread_reference needs at least 2 real phrases, got {n}")
    gen = _generated_cells(given_mask, n, t, s)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_pairs)
    j = (i + rng.integers(1, n, max_pairs)) % n  # never i itself
    cells = (gen[i] & gen[j])[..., None]
    return float(((x[i] ^ x[j]) & cells).sum(axis=(1, 2, 3)).mean())


def _check_ranges(voice_ranges, tracks: int) -> list[tuple[int, int]]:
    ranges = [(int(lo), int(hi)) for lo, hi in voice_ranges]
    if len(ranges) != tracks:
        raise ValueError(f"voice_ranges needs one (low_index, high_index) per track ({tracks}), got {len(ranges)}")
    for lo, hi in ranges:
        if lo > hi:
            raise ValueError(f"a voice range must have low <= high, got ({lo}, {hi})")
    return ranges


def out_of_range_rate(rolls, voice_ranges) -> float:
    """Share of sounding cells lying outside their voice's range, over all voices. ``voice_ranges`` is
    one ``(low_index, high_index)`` per track, pitch indices, inclusive. ``nan`` if nothing sounds."""
    rolls = _check_rolls(rolls)
    ranges = _check_ranges(voice_ranges, rolls.shape[1])
    p = np.arange(rolls.shape[3])
    outside = total = 0
    for track, (lo, hi) in enumerate(ranges):
        cells = rolls[:, track].sum(axis=(0, 1))  # [P] sounding cells per pitch
        outside += int(cells[(p < lo) | (p > hi)].sum())
        total += int(cells.sum())
    return _nan_or(outside, total)


def random_baseline(rolls, known, steps_per_bar: int, pitch_low: int, voice_ranges, seed: int) -> np.ndarray:
    """Random in-key notes in each missing voice: the floor a model must beat.

    Known cells (``known [N, T, S]`` True) are copied from ``rolls``. Each phrase's key is the best
    key (:func:`best_key`) of its known cells, or of the whole phrase if none are known (C if the
    phrase is silent too). Every missing (track, step) gets, per quarter-note beat, one pitch drawn
    uniformly from that key's scale within the track's range (``voice_ranges``, inclusive pitch
    indices), held through the beat's missing steps. One pitch per missing step: monophonic.
    Deterministic for a seed (``numpy.random.default_rng(seed)``)."""
    rolls = _check_rolls(rolls)
    n, t, s, p = rolls.shape
    known = np.asarray(known, bool)
    if known.shape != (n, t, s):
        raise ValueError(f"known must be [N, tracks, steps] = {(n, t, s)}, got {known.shape}")
    beat = _beat_steps(steps_per_bar)
    if s % beat:
        raise ValueError(f"the phrase's {s} steps are not a whole number of {beat}-step beats")
    ranges = _check_ranges(voice_ranges, t)
    masks = _scale_masks()
    pcs = (pitch_low + np.arange(p)) % 12
    known_cells = rolls & known[..., None]
    keys = phrase_keys(known_cells, pitch_low)
    whole = phrase_keys(rolls, pitch_low)
    keys = np.where(known.any(axis=(1, 2)), keys, whole)
    keys = np.where(keys == NO_KEY, 0, keys)
    rng = np.random.default_rng(seed)
    out = known_cells.copy()
    beats = s // beat
    for i in range(n):
        for track, (lo, hi) in enumerate(ranges):
            missing = ~known[i, track]
            if not missing.any():
                continue
            candidates = np.nonzero(masks[keys[i], pcs] & (np.arange(p) >= lo) & (np.arange(p) <= hi))[0]
            if not candidates.size:
                raise ValueError(f"track {track}'s range ({lo}, {hi}) holds no pitch of key {keys[i]}'s scale")
            per_step = np.repeat(rng.choice(candidates, beats), beat)  # [S]
            steps = np.nonzero(missing)[0]
            out[i, track, steps, per_step[steps]] = True
    return out
