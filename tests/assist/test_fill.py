"""The window-by-window fill (musicgan/assist/fill.py) on an untrained cpu-masked-tiny generator with
its context layers made non-zero: the known cells come back exactly, the windows are where the
module says, a job does not depend on the others in its batch, window 0 is a plain request."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgan.assist.fill import (FillJob, continue_job, fill, fill_many, harmonize_job, inpaint_job, line_roll,
                                  long_job, window_seed)
from musicgan.gan import Request, generate_many

T, SPB, P, PHRASE_BARS = 4, 16, 48, 4


@pytest.fixture(scope="module")
def g():
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    torch.manual_seed(0)
    g, _ = build_models(load_preset("cpu-masked-tiny").model, [T, PHRASE_BARS * SPB, P], PHRASE_BARS, 1)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # as training would leave them: the zero-initialised context layers non-zero
        for layer in (g.context_pitch, g.context_local, g.context_key):
            for p in layer.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    return g.eval()


def melody(n_steps: int, seed: int = 0) -> np.ndarray:
    """A pitch index per step (-1 = rest): quarter notes of a random walk, a rest now and then."""
    rng = np.random.default_rng(seed)
    notes = np.clip(30 + np.cumsum(rng.integers(-2, 3, -(-n_steps // 4))), 0, P - 1)
    notes[rng.random(len(notes)) < 0.15] = -1
    return np.repeat(notes, 4)[:n_steps]


def piece(n_bars: int, seed: int = 0) -> np.ndarray:
    """A monophonic 4-voice roll ``[T, steps, P]`` of ``n_bars``."""
    return np.stack([line_roll(melody(n_bars * SPB, seed + t) - 6 * t, 1, 0, P)[0] for t in range(T)])


def assert_known_kept(out: np.ndarray, job: FillJob) -> None:
    assert out.dtype == bool and out.shape == (job.n, *job.roll.shape)
    k = job.known
    assert np.array_equal(out[:, k], np.broadcast_to(job.roll[k], out[:, k].shape))
    assert out.sum(-1).max() <= 1  # one pitch or a rest per voice and step


def test_harmonize_seven_bars_keeps_the_melody_in_windows_0_2_3(g):
    line = melody(7 * SPB)
    job = harmonize_job(line, 0, T, P, SPB, n=2, seed=3)
    out = fill_many(g, [job])[0]
    assert job.windows == [(0, 4), (2, 6), (3, 7)]
    assert_known_kept(out, job)
    sounding = line >= 0
    assert (out[:, 0, sounding, line[sounding]]).all() and not out[:, 0, ~sounding].any()
    assert out[:, 1:].any()                       # the other voices are written


def test_harmonize_pads_a_melody_to_whole_bars_with_known_rests(g):
    job = harmonize_job(melody(2 * SPB + 5), 3, T, P, SPB, n=1)  # 2 bars and 5 steps, in the bass
    assert job.roll.shape == (T, 3 * SPB, P)
    assert job.known[3].all() and not job.known[:3].any()
    assert not job.roll[3, 2 * SPB + 5 :].any()
    out = fill_many(g, [job])[0]
    assert job.windows == [(0, 4)]                 # 3 bars: one window padded to a phrase, cut back
    assert out.shape == (1, T, 3 * SPB, P)
    assert_known_kept(out, job)


def test_continue_writes_after_the_prompt_window_by_window(g):
    prompt = piece(2, seed=1)
    job = continue_job(prompt, 6, SPB, n=2, seed=4, temperature=1.0)
    out = fill_many(g, [job])[0]
    assert job.windows == [(0, 4), (2, 6), (4, 8)]
    assert_known_kept(out, job)
    assert np.array_equal(out[:, :, : 2 * SPB], np.broadcast_to(prompt, out[:, :, : 2 * SPB].shape))


def test_inpaint_rewrites_only_the_region(g):
    src = piece(8, seed=2)
    job = inpaint_job(src, 5, 7, [1, 2], SPB, n=3, seed=5, temperature=1.0)
    out = fill_many(g, [job])[0]
    assert job.windows == [(3, 7)]                 # two bars of known context before the region
    assert_known_kept(out, job)
    region = out[:, 1:3, 5 * SPB : 7 * SPB]
    assert not np.array_equal(region, np.broadcast_to(src[1:3, 5 * SPB : 7 * SPB], region.shape))
    # two separate regions: one window each
    known = np.ones((T, 8 * SPB), bool)
    known[0, SPB : 2 * SPB] = False
    known[2, 6 * SPB : 7 * SPB] = False
    gaps = FillJob(src, known, n=1, seed=1)
    assert_known_kept(fill_many(g, [gaps])[0], gaps)
    assert gaps.windows == [(0, 4), (4, 8)]


def test_long_pieces_and_a_piece_shorter_than_a_phrase(g):
    job = long_job(10, T, P, SPB, n=2, seed=6)
    out = fill_many(g, [job])[0]
    assert job.windows == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert out.shape == (2, T, 10 * SPB, P) and out.sum(-1).max() <= 1
    short = long_job(3, T, P, SPB, n=2, seed=6)
    s = fill_many(g, [short])[0]
    assert short.windows == [(0, 4)] and s.shape == (2, T, 3 * SPB, P)
    assert np.array_equal(s, out[:, :, : 3 * SPB])  # the same first window, cut back


def test_a_fully_known_piece_comes_back_unchanged_with_no_window(g):
    src = piece(5)
    job = FillJob(src, np.ones((T, 5 * SPB), bool), n=2)
    out = fill_many(g, [job])[0]
    assert job.windows == []
    assert np.array_equal(out, np.broadcast_to(src, out.shape))


def _long_roll(n_bars: int):
    job = long_job(n_bars, T, P, SPB)
    return job.roll, job.known


def test_window_zero_of_a_long_piece_is_a_plain_one_phrase_request(g):
    for temperature in (0.0, 1.0):
        out = fill(g, *_long_roll(6), n=3, seed=11, temperature=temperature)
        plain = generate_many(g, [Request(3, 11, temperature)])[0].numpy()
        assert np.array_equal(out[:, :, : PHRASE_BARS * SPB], plain)
    assert window_seed(11, 0) == 11 and len({window_seed(11, w) for w in range(5)}) == 5


def test_fill_many_of_several_jobs_equals_each_job_alone(g):
    def jobs():
        return [harmonize_job(melody(7 * SPB, 3), 0, T, P, SPB, n=2, seed=1, temperature=1.0),
                long_job(10, T, P, SPB, n=1, seed=2, temperature=1.0),
                inpaint_job(piece(6, 4), 1, 3, [0, 3], SPB, n=2, seed=3),
                long_job(3, T, P, SPB, n=2, seed=4)]

    together = fill_many(g, jobs())
    for i, job in enumerate(jobs()):
        alone = fill_many(g, [job])[0]
        assert np.array_equal(alone, together[i]), i


def test_the_same_seed_gives_the_same_piece_and_another_seed_another(g):
    """Sampled (an untrained G's argmax barely moves with its latents)."""
    a = fill(g, *_long_roll(4), n=2, seed=1, temperature=1.0)
    assert np.array_equal(a, fill(g, *_long_roll(4), n=2, seed=1, temperature=1.0))
    assert not np.array_equal(a, fill(g, *_long_roll(4), n=2, seed=2, temperature=1.0))


def test_bad_calls_raise_clear_value_errors(g):
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    plain, _ = build_models(load_preset("cpu-tiny").model, [T, PHRASE_BARS * SPB, P], PHRASE_BARS, 1)
    with pytest.raises(ValueError, match="masked"):
        fill_many(plain, [long_job(4, T, P, SPB)])
    with pytest.raises(ValueError, match="overlap_bars"):
        fill_many(g, [long_job(8, T, P, SPB)], overlap_bars=4)
    with pytest.raises(ValueError, match="whole bars"):
        fill(g, np.zeros((T, SPB + 3, P), bool), np.zeros((T, SPB + 3), bool))


@pytest.mark.parametrize("make", [
    lambda: harmonize_job(melody(7 * SPB), 0, T, P, SPB),
    lambda: continue_job(piece(3), 5, SPB),
    lambda: inpaint_job(piece(9), 2, 4, [1, 2], SPB),
    lambda: inpaint_job(piece(9), 7, 9, [0], SPB),
    lambda: long_job(10, T, P, SPB),
    lambda: long_job(2, T, P, SPB),
])
def test_count_windows_is_the_number_of_forwards_fill_makes(g, make):
    from musicgan.assist.fill import count_windows

    job = make()
    expected = count_windows(job.known, SPB, PHRASE_BARS)
    fill_many(g, [job])
    assert expected == len(job.windows) >= 1


def test_stepping_a_fill_run_by_hand_gives_what_fill_many_gives(g):
    """The served app drives FillRun one window at a time through its batched forward: the same windows,
    seeds and notes as fill_many."""
    from musicgan.assist.fill import FillRun

    ref_job = inpaint_job(piece(8, seed=4), 2, 6, [1, 3], SPB, n=2, seed=11)
    expected = fill_many(g, [ref_job])[0]
    job = inpaint_job(piece(8, seed=4), 2, 6, [1, 3], SPB, n=2, seed=11)
    run = FillRun(g, job)
    seeds = []
    while (req := run.next_request()) is not None:
        seeds.append(req.seed)
        run.take(generate_many(g, [req])[0].numpy())
    assert job.windows == ref_job.windows and len(seeds) == len(job.windows) > 1
    assert seeds == [window_seed(11, w) for w in range(len(seeds))]
    assert np.array_equal(run.result(), expected)
