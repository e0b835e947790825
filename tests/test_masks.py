"""The training masks (musicgan/masks.py): each kind of the mixture on its own, its shape and its
randomness, and the mixture's kind frequencies against the weights."""

from __future__ import annotations

import pytest
import torch

from musicgan.masks import KINDS, bars_mask, draw_masks, voices_mask

T, BARS, SPB = 4, 4, 16  # soprano..bass, 4 bars of 16 steps
STEPS = BARS * SPB


def only(kind: str, n: int = 400, seed: int = 0, bass_share: float = 0.25) -> torch.Tensor:
    return draw_masks(n, T, BARS, SPB, {kind: 1.0}, bass_share=bass_share,
                      generator=torch.Generator().manual_seed(seed))


def bar_rows(m: torch.Tensor) -> torch.Tensor:
    """``[n, tracks, bars]`` of each bar's known state; asserts every bar is all known or all unknown."""
    per_bar = m.view(m.shape[0], T, BARS, SPB)
    assert torch.equal(per_bar.all(3), per_bar.any(3)), "a mask changes inside a bar"
    return per_bar.all(3)


def test_none_knows_nothing():
    m = only("none")
    assert m.shape == (400, T, STEPS) and m.dtype == torch.bool
    assert not m.any()


def test_voice_knows_the_soprano_or_the_bass_whole_and_nothing_else():
    m = only("voice", n=2000, bass_share=0.25)
    rows = m.all(2)                                           # [n, tracks] rows fully known
    assert torch.equal(rows, m.any(2)), "a voice row is partly known"
    assert torch.equal(rows.sum(1), torch.ones(2000, dtype=torch.long))
    assert not rows[:, 1:3].any()                             # alto and tenor never given alone
    bass = rows[:, 3].float().mean().item()
    assert 0.2 < bass < 0.3, bass                             # 500 expected of 2000; sd ~19
    assert not only("voice", bass_share=0.0)[:, 3].any()
    assert only("voice", bass_share=1.0)[:, 3].all()


def test_voices_knows_two_or_three_whole_rows_with_both_counts_seen():
    m = only("voices", n=1000)
    rows = m.all(2)
    assert torch.equal(rows, m.any(2))
    k = rows.sum(1)
    assert set(k.tolist()) == {2, 3}
    assert 0.4 < (k == 3).float().mean().item() < 0.6
    assert all(rows[:, t].any() for t in range(T))          # every voice is sometimes given


def test_prompt_knows_the_first_one_to_three_bars_of_every_voice():
    m = only("prompt", n=1000)
    bars = bar_rows(m)
    assert torch.equal(bars, bars[:, :1].expand_as(bars)), "the voices differ"
    known = bars[:, 0]                                         # [n, bars]
    n_known = known.sum(1)
    first = torch.arange(BARS)[None] < n_known[:, None]
    assert torch.equal(known, first), "the known bars are not a prefix"
    assert set(n_known.tolist()) == {1, 2, 3}


def test_region_leaves_exactly_one_rectangle_of_bars_by_voices_unknown():
    m = only("region", n=1000)
    bars = bar_rows(m)
    unknown = ~bars                                            # [n, tracks, bars]
    rows = unknown.any(2)                                      # voices with an unknown bar
    cols = unknown.any(1)                                      # bars with an unknown voice
    assert rows.any(1).all(), "a region mask with nothing unknown"
    # a rectangle: the unknown cells are exactly (those voices) x (those bars)
    assert torch.equal(unknown, rows[:, :, None] & cols[:, None, :])
    # its bars are one contiguous run
    first = cols.float().argmax(1)
    length = cols.sum(1)
    run = (torch.arange(BARS)[None] >= first[:, None]) & (torch.arange(BARS)[None] < (first + length)[:, None])
    assert torch.equal(cols, run)
    assert set(rows.sum(1).tolist()) == {1, 2, 3, 4} and set(length.tolist()) == {1, 2, 3, 4}


def test_draws_are_deterministic_with_a_seeded_generator_and_differ_across_seeds():
    w = {"none": 1, "voice": 1, "voices": 1, "prompt": 1, "region": 1}
    a = draw_masks(64, T, BARS, SPB, w, generator=torch.Generator().manual_seed(3))
    b = draw_masks(64, T, BARS, SPB, w, generator=torch.Generator().manual_seed(3))
    c = draw_masks(64, T, BARS, SPB, w, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def kind_of(m: torch.Tensor) -> list[str]:
    """Classify each mask by its shape (the kinds are disjoint apart from edge cases, counted below)."""
    out = []
    for x in m:
        rows_full, rows_any = x.all(1), x.any(1)
        if not x.any():
            out.append("none")
        elif torch.equal(rows_full, rows_any) and int(rows_full.sum()) == 1 and (rows_full[0] or rows_full[-1]):
            out.append("voice")
        elif torch.equal(rows_full, rows_any) and int(rows_full.sum()) in (2, 3):
            out.append("voices")
        elif torch.equal(x, x[:1].expand_as(x)) and x[0, 0] and not x[0, -1]:
            out.append("prompt")
        else:
            out.append("region")
    return out


def test_mixture_kind_frequencies_follow_the_weights():
    """none, voice and prompt masks never look alike, so each draw's kind is read off its shape."""
    w = {"none": 0.2, "voice": 0.5, "voices": 0.0, "prompt": 0.3, "region": 0.0}
    n = 4000
    kinds = kind_of(draw_masks(n, T, BARS, SPB, w, generator=torch.Generator().manual_seed(0)))
    share = {k: kinds.count(k) / n for k in KINDS}
    assert share["voices"] == share["region"] == 0.0, share
    for k in ("none", "voice", "prompt"):
        assert abs(share[k] - w[k]) < 0.03, share                # sd <= 0.008


def test_all_five_kinds_appear_in_the_mixture_near_their_weights():
    """A region mask can look like another kind (everything unknown looks like none; every bar of
    some voices looks like voice(s); the last bars of every voice look like a prompt): loose bounds."""
    w = {"none": 0.1, "voice": 0.3, "voices": 0.2, "prompt": 0.2, "region": 0.2}
    n = 3000
    kinds = kind_of(draw_masks(n, T, BARS, SPB, w, generator=torch.Generator().manual_seed(1)))
    share = {k: kinds.count(k) / n for k in KINDS}
    for k in KINDS:
        assert abs(share[k] - w[k]) < 0.06, share


def test_weights_need_not_sum_to_one():
    a = draw_masks(200, T, BARS, SPB, {"voice": 5.0, "none": 5.0}, generator=torch.Generator().manual_seed(1))
    assert 0.35 < a.any((1, 2)).float().mean().item() < 0.65


def test_voices_mask_and_bars_mask():
    v = voices_mask(T, STEPS, [0, 3])
    assert v.shape == (T, STEPS) and v[0].all() and v[3].all() and not v[1:3].any()
    b = bars_mask(T, STEPS, SPB, 1, 3)
    assert b[:, SPB : 3 * SPB].all() and not b[:, :SPB].any() and not b[:, 3 * SPB :].any()
    b2 = bars_mask(T, STEPS, SPB, 0, 1, voices=[2])
    assert int(b2.sum()) == SPB and b2[2, :SPB].all()


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_on_a_two_bar_phrase_keeps_its_contract(kind):
    """The tiny test models use 2-bar phrases: prompt gives 1 bar, region stays a rectangle."""
    m = draw_masks(300, 3, 2, 8, {kind: 1.0}, generator=torch.Generator().manual_seed(2))
    assert m.shape == (300, 3, 16)
    if kind == "prompt":
        assert m[:, :, :8].all() and not m[:, :, 8:].any()
    if kind == "region":
        assert (~m).any((1, 2)).all()
