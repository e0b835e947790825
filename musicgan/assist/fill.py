"""The assistant's tasks as masks, and the window-by-window path for music longer than one phrase.

Every task is one call of :func:`fill`: a roll of any number of bars, a mask of the cells that are
known, and the generator writes the rest. It slides a phrase-long window over the piece:

- each window starts ``overlap_bars`` before the first bar that still has unknown cells (clipped to
  the piece), so it sees the last bars already written (or given) as known context;
- the masked generator fills the window's unknown cells, and they become known for the next window.

So a long piece is written phrase by phrase with a hop of ``phrase bars - overlap_bars`` (2 bars for
4-bar phrases): each phrase takes its first 2 bars from the end of the one before. A melody longer
than a phrase is harmonized the same way: each window knows its melody and the voices already
written in the overlap. Any length works: the last window overlaps more when the length is not a
whole number of hops, and a piece shorter than a phrase is padded with unknown cells and cut back.

Seeds: window ``w`` of a job draws its phrase latent from :func:`window_seed` and every window
shares the job's track latents (its voices), drawn from the job's seed. Window 0's draw equals a
plain one-phrase request with the same seed. Jobs are batched: each round of windows is ONE
generator forward for every job still running (:func:`fill_many`), and a job's output does not
depend on the other jobs in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from musicgan.gan import Request, generate_many, unwrap

OVERLAP_BARS = 2
"""Bars each window takes, known, from what is already written."""


@dataclass
class FillJob:
    """One piece to complete: ``n`` completions of ``roll`` where ``known`` is false."""

    roll: np.ndarray
    """bool ``[tracks, steps, pitches]``; only the cells under ``known`` are read."""
    known: np.ndarray
    """bool ``[tracks, steps]``."""
    n: int = 1
    seed: int = 0
    temperature: float = 0.0
    label: int | None = None
    windows: list[tuple[int, int]] = field(default_factory=list)
    """Filled in by :func:`fill_many`: each window's ``(first bar, end bar)``, in order."""


def window_seed(seed: int, window: int) -> int:
    """The seed of window ``window`` of a job seeded ``seed`` (window 0 keeps ``seed``)."""
    return seed if window == 0 else (seed * 1_000_003 + window) % (2**63 - 1)


def _next_window(filled: np.ndarray, steps_per_bar: int, phrase_bars: int, overlap_bars: int) -> int | None:
    """The first bar of the next window, or None when every cell is filled."""
    open_bars = np.flatnonzero(~filled.reshape(filled.shape[0], -1, steps_per_bar).all((0, 2)))
    if not len(open_bars):
        return None
    n_bars = filled.shape[1] // steps_per_bar
    return int(min(max(open_bars[0] - overlap_bars, 0), n_bars - phrase_bars))


def fill_many(g, jobs: list[FillJob], overlap_bars: int = OVERLAP_BARS) -> list[np.ndarray]:
    """Complete every job, window by window; returns bool ``[n, tracks, steps, pitches]`` per job
    with each job's known cells exactly as given."""
    g = unwrap(g)
    if not getattr(g, "masked", False):
        raise ValueError("only a masked generator (model.masked) can fill in known notes")
    spb, phrase_bars = g.steps_per_bar, g.n_bars
    if not 0 <= overlap_bars < phrase_bars:
        raise ValueError(f"overlap_bars must be within 0..{phrase_bars - 1}, not {overlap_bars}")
    states = []
    for job in jobs:
        t, steps, p = job.roll.shape
        if job.known.shape != (t, steps):
            raise ValueError(f"known must be [tracks, steps] = {(t, steps)}, got {job.known.shape}")
        if steps % spb:
            raise ValueError(f"a piece must be whole bars of {spb} steps; got {steps} steps")
        pad = max(phrase_bars * spb - steps, 0)  # shorter than a phrase: unknown cells, cut off at the end
        roll = np.zeros((job.n, t, steps + pad, p), bool)
        known = np.zeros((t, steps + pad), bool)
        known[:, :steps] = job.known
        roll[:, :, :steps] = job.roll[None] & job.known[None, :, :, None]
        job.windows = []
        states.append((roll, known.copy(), steps))
    round_ = 0
    while True:
        active, requests = [], []
        for i, (job, (roll, filled, _)) in enumerate(zip(jobs, states)):
            start = _next_window(filled, spb, phrase_bars, overlap_bars)
            if start is None:
                continue
            win = slice(start * spb, (start + phrase_bars) * spb)
            mask = torch.from_numpy(np.ascontiguousarray(filled[:, win]))[None].expand(job.n, -1, -1)
            requests.append(Request(job.n, window_seed(job.seed, round_), job.temperature, label=job.label,
                                    context=torch.from_numpy(np.ascontiguousarray(roll[:, :, win])), mask=mask,
                                    track_seed=job.seed))
            active.append((i, win, start))
        if not requests:
            break
        for (i, win, start), out in zip(active, generate_many(g, requests)):
            roll, filled, _ = states[i]
            roll[:, :, win] = out.numpy()
            filled[:, win] = True
            jobs[i].windows.append((start, start + phrase_bars))
        round_ += 1
    return [roll[:, :, :steps] for roll, _, steps in states]


def fill(g, roll: np.ndarray, known: np.ndarray, n: int = 1, seed: int = 0, temperature: float = 0.0,
         label: int | None = None, overlap_bars: int = OVERLAP_BARS) -> np.ndarray:
    """``n`` completions of one piece: bool ``[n, tracks, steps, pitches]`` (see :func:`fill_many`)."""
    return fill_many(g, [FillJob(roll, known, n, seed, temperature, label)], overlap_bars)[0]


# --- the tasks, as (roll, known) pairs -------------------------------------------------------------


def line_roll(line: np.ndarray, n_tracks: int, track: int, n_pitches: int) -> np.ndarray:
    """bool ``[tracks, steps, pitches]`` with ``line`` (a pitch index per step, -1 = rest) in ``track``."""
    roll = np.zeros((n_tracks, len(line), n_pitches), bool)
    steps = np.flatnonzero(line >= 0)
    roll[track, steps, line[steps]] = True
    return roll


def harmonize_job(line: np.ndarray, track: int, n_tracks: int, n_pitches: int, steps_per_bar: int,
                  **job) -> FillJob:
    """The other voices for a melody in ``track`` (its rests are known too: the melody stays as given)."""
    bars = -(-len(line) // steps_per_bar)
    line = np.concatenate([line, np.full(bars * steps_per_bar - len(line), -1, line.dtype)])
    known = np.zeros((n_tracks, len(line)), bool)
    known[track] = True
    return FillJob(line_roll(line, n_tracks, track, n_pitches), known, **job)


def continue_job(prompt: np.ndarray, add_bars: int, steps_per_bar: int, **job) -> FillJob:
    """``add_bars`` new bars after a prompt roll ``[tracks, steps, pitches]`` (every prompt cell known)."""
    t, steps, p = prompt.shape
    roll = np.concatenate([prompt, np.zeros((t, add_bars * steps_per_bar, p), bool)], 1)
    known = np.zeros((t, roll.shape[1]), bool)
    known[:, :steps] = True
    return FillJob(roll, known, **job)


def inpaint_job(piece: np.ndarray, first_bar: int, end_bar: int, voices, steps_per_bar: int, **job) -> FillJob:
    """Regenerate bars ``first_bar <= bar < end_bar`` (0-based) of ``voices``; every other cell stays."""
    known = np.ones(piece.shape[:2], bool)
    known[list(voices), first_bar * steps_per_bar : end_bar * steps_per_bar] = False
    return FillJob(piece, known, **job)


def long_job(n_bars: int, n_tracks: int, n_pitches: int, steps_per_bar: int, **job) -> FillJob:
    """A piece of ``n_bars`` with nothing given, written phrase by phrase."""
    steps = n_bars * steps_per_bar
    return FillJob(np.zeros((n_tracks, steps, n_pitches), bool), np.zeros((n_tracks, steps), bool), **job)
