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


class FillRun:
    """One job's window-by-window completion, a step at a time: :meth:`next_request` gives the next
    window as a :class:`~musicgan.gan.Request` (None when the piece is complete), :meth:`take` writes the
    generator's output for it. :func:`fill_many` drives many runs with one forward per round; the served
    app drives each through its batched forward, so windows of different requests share forwards."""

    def __init__(self, g, job: FillJob, overlap_bars: int = OVERLAP_BARS):
        g = unwrap(g)
        if not getattr(g, "masked", False):
            raise ValueError("only a masked generator (model.masked) can fill in known notes")
        self.spb, self.phrase_bars = g.steps_per_bar, g.n_bars
        if not 0 <= overlap_bars < self.phrase_bars:
            raise ValueError(f"overlap_bars must be within 0..{self.phrase_bars - 1}, not {overlap_bars}")
        t, steps, p = job.roll.shape
        if job.known.shape != (t, steps):
            raise ValueError(f"known must be [tracks, steps] = {(t, steps)}, got {job.known.shape}")
        if steps % self.spb:
            raise ValueError(f"a piece must be whole bars of {self.spb} steps; got {steps} steps")
        self.job, self.overlap_bars, self.steps = job, overlap_bars, steps
        pad = max(self.phrase_bars * self.spb - steps, 0)  # shorter than a phrase: unknown cells, cut off at the end
        self.roll = np.zeros((job.n, t, steps + pad, p), bool)
        self.filled = np.zeros((t, steps + pad), bool)
        self.filled[:, :steps] = job.known
        self.roll[:, :, :steps] = job.roll[None] & job.known[None, :, :, None]
        self.pending: tuple[int, slice] | None = None
        job.windows = []

    def next_request(self) -> Request | None:
        """The request for the next window, or None when every cell is filled."""
        start = _next_window(self.filled, self.spb, self.phrase_bars, self.overlap_bars)
        if start is None:
            return None
        job, win = self.job, slice(start * self.spb, (start + self.phrase_bars) * self.spb)
        self.pending = (start, win)
        mask = torch.from_numpy(np.ascontiguousarray(self.filled[:, win]))[None].expand(job.n, -1, -1)
        return Request(job.n, window_seed(job.seed, len(job.windows)), job.temperature, label=job.label,
                       context=torch.from_numpy(np.ascontiguousarray(self.roll[:, :, win])), mask=mask,
                       track_seed=job.seed)

    def take(self, out) -> None:
        """Write the generator's output (``[n, tracks, window steps, pitches]``) for the pending window."""
        start, win = self.pending
        self.roll[:, :, win] = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        self.filled[:, win] = True
        self.job.windows.append((start, start + self.phrase_bars))
        self.pending = None

    def result(self) -> np.ndarray:
        """bool ``[n, tracks, steps, pitches]``, the job's known cells exactly as given."""
        return self.roll[:, :, : self.steps]


def count_windows(known: np.ndarray, steps_per_bar: int, phrase_bars: int, overlap_bars: int = OVERLAP_BARS) -> int:
    """How many windows (generator forwards) completing a piece with ``known [tracks, steps]`` takes:
    a request's cost, known before any forward."""
    steps = known.shape[1]
    filled = np.zeros((known.shape[0], max(steps, phrase_bars * steps_per_bar)), bool)
    filled[:, :steps] = known
    n = 0
    while (start := _next_window(filled, steps_per_bar, phrase_bars, overlap_bars)) is not None:
        filled[:, start * steps_per_bar: (start + phrase_bars) * steps_per_bar] = True
        n += 1
    return n


def fill_many(g, jobs: list[FillJob], overlap_bars: int = OVERLAP_BARS) -> list[np.ndarray]:
    """Complete every job, window by window; returns bool ``[n, tracks, steps, pitches]`` per job
    with each job's known cells exactly as given. Each round is one generator forward for every job
    still running."""
    g = unwrap(g)
    runs = [FillRun(g, job, overlap_bars) for job in jobs]
    while True:
        active = [(run, req) for run in runs if (req := run.next_request()) is not None]
        if not active:
            break
        for (run, _), out in zip(active, generate_many(g, [req for _, req in active])):
            run.take(out)
    return [run.result() for run in runs]


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
