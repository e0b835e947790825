"""Masks over (track, step) for the masked generator: true where a cell is known (given), false where
the generator writes it. Pure PyTorch.

Training draws one mask per example from a mixture (:func:`draw_masks`, weights in
:class:`musicgan.config.MaskConfig`). The assistant's tasks build theirs from :func:`voices_mask`
and :func:`bars_mask` (:mod:`musicgan.assist.fill`).
"""

from __future__ import annotations

import torch

KINDS = ("none", "voice", "voices", "prompt", "region")


def voices_mask(n_tracks: int, steps: int, voices) -> torch.Tensor:
    """``[tracks, steps]``: the listed tracks known at every step."""
    m = torch.zeros(n_tracks, steps, dtype=torch.bool)
    m[list(voices)] = True
    return m


def bars_mask(n_tracks: int, steps: int, steps_per_bar: int, first_bar: int, end_bar: int, voices=None) -> torch.Tensor:
    """``[tracks, steps]``: bars ``first_bar <= bar < end_bar`` of the listed tracks (all if None) set."""
    m = torch.zeros(n_tracks, steps, dtype=torch.bool)
    rows = list(range(n_tracks)) if voices is None else list(voices)
    m[rows, first_bar * steps_per_bar : end_bar * steps_per_bar] = True
    return m


def draw_masks(n: int, n_tracks: int, n_bars: int, steps_per_bar: int, weights: dict[str, float],
               bass_share: float = 0.25, generator: torch.Generator | None = None,
               device: torch.device | None = None) -> torch.Tensor:
    """``[n, tracks, steps]`` bool masks, one kind per example drawn with ``weights`` (keys of :data:`KINDS`):

    - ``none``: nothing known;
    - ``voice``: one voice known, the bass with probability ``bass_share``, else the soprano (track 0);
    - ``voices``: two or three voices known, chosen at random;
    - ``prompt``: the first 1 to ``n_bars - 1`` bars known, every voice;
    - ``region``: a random rectangle (a run of bars x a non-empty set of voices) unknown, the rest known.
    """
    steps = n_bars * steps_per_bar
    w = torch.tensor([float(weights.get(k, 0.0)) for k in KINDS])
    kind = torch.multinomial(w / w.sum(), n, replacement=True, generator=generator)
    u = torch.rand(n, 6, generator=generator)                       # uniform draws per example
    perm = torch.argsort(torch.rand(n, n_tracks, generator=generator), 1)  # a random order of the voices
    rank = torch.argsort(perm, 1)                                    # each voice's place in that order
    bar_of_step = torch.arange(steps) // steps_per_bar               # [steps]
    bar = bar_of_step[None].expand(n, steps)

    masks = torch.zeros(n, n_tracks, steps, dtype=torch.bool)
    # voice: soprano or bass
    one = torch.where(u[:, 0] < bass_share, n_tracks - 1, 0)
    voice = torch.arange(n_tracks)[None] == one[:, None]             # [n, tracks]
    # voices: the first 2 or 3 of the random order
    k = 2 + (u[:, 1] < 0.5).long() if n_tracks > 3 else torch.full((n,), max(n_tracks - 1, 1))
    several = rank < k[:, None]
    # prompt: the first 1..n_bars-1 bars
    prompt_bars = 1 + (u[:, 2] * max(n_bars - 1, 1)).long().clamp_max(max(n_bars - 2, 0))
    prompt = (bar < prompt_bars[:, None])[:, None].expand(n, n_tracks, steps)
    # region: bars [a, b) x the first 1..tracks voices of the random order, unknown
    a = (u[:, 3] * n_bars).long().clamp_max(n_bars - 1)
    length = 1 + (u[:, 4] * (n_bars - a)).long().clamp_max(n_bars - a - 1)
    n_voices = 1 + (u[:, 5] * n_tracks).long().clamp_max(n_tracks - 1)
    in_bars = (bar >= a[:, None]) & (bar < (a + length)[:, None])    # [n, steps]
    region = ~(in_bars[:, None] & (rank < n_voices[:, None])[..., None])

    for i, name in enumerate(KINDS):
        pick = kind == i
        if name == "voice":
            masks[pick] = voice[pick][..., None].expand(-1, -1, steps)
        elif name == "voices":
            masks[pick] = several[pick][..., None].expand(-1, -1, steps)
        elif name == "prompt":
            masks[pick] = prompt[pick]
        elif name == "region":
            masks[pick] = region[pick]
    return masks.to(device) if device is not None else masks
