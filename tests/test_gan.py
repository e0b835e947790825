"""The pure-PyTorch loop: phase functions, EMA, a tiny GAN that learns, generation, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from musicgan import checkpoint as ckpt
from musicgan.gan import critic_step, ema_update, generate, generator_step, make_gan, train
from musicgan.model import build_models
from musicgan.presets import load_preset

SHAPE, BARS = [2, 32, 12], 2  # 2 tracks, 2 bars of 16 steps, 12 pitches
DATA = {"feature_config": {"kind": "pianoroll", "bars": 2, "steps_per_bar": 16, "pitch_low": 60, "pitch_high": 72,
                           "track_names": ["hi", "lo"]},
        "feature_hash": "test", "example_shape": SHAPE, "labels": ["toy"], "bars": BARS, "steps_per_bar": 16,
        "pitch_low": 60, "track_names": ["hi", "lo"]}


def toy_batches(batch=16):
    """Every phrase: track 0 holds pitch index 7 throughout, track 1 holds pitch index 0."""
    x = torch.zeros(batch, *SHAPE)
    x[:, 0, :, 7] = 1
    x[:, 1, :, 0] = 1
    while True:
        yield x, None


def tiny_gan(**over):
    cfg = load_preset("cpu-tiny", [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    g, d = build_models(cfg.model, SHAPE, BARS, 1)
    return make_gan(g, d, cfg), cfg


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_phase_functions_return_float_dicts_and_move_weights(loss):
    gan, cfg = tiny_gan(**{"loss.kind": loss})
    real, _ = next(toy_batches())
    before_d = [p.clone() for p in gan.d.parameters()]
    out = critic_step(gan, real, None, cfg)
    assert {"d_loss", "d_real", "d_fake"} <= set(out) and all(isinstance(v, float) for v in out.values())
    assert ("gp" in out) == (loss == "wgan-gp")
    assert any(not torch.equal(a, b) for a, b in zip(before_d, gan.d.parameters()))
    before_g = [p.clone() for p in gan.g.parameters()]
    d_before = [p.clone() for p in gan.d.parameters()]
    out = generator_step(gan, 8, None, cfg, torch.device("cpu"))
    assert set(out) == {"g_loss"}
    assert any(not torch.equal(a, b) for a, b in zip(before_g, gan.g.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(d_before, gan.d.parameters())), "G step leaves D alone"
    assert all(p.requires_grad for p in gan.d.parameters())


def test_ema_update_is_a_convex_step():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        a.weight.fill_(0.0)
        b.weight.fill_(1.0)
    ema_update(a, b, decay=0.9)
    assert torch.allclose(a.weight, torch.full((2, 2), 0.1))


def test_tiny_gan_learns_the_toy_music():
    gan, cfg = tiny_gan(**{"train.total_steps": 120, "optim.lr_g": 3e-3, "optim.lr_d": 3e-3, "optim.ema_decay": 0.9})
    hits_before = generate(gan.g_ema, 64, seed=0)[:, 0, :, 7].float().mean().item()
    seen = []
    train(gan, toy_batches(), cfg, lambda step, m: seen.append(step))
    assert seen == list(range(1, 121))
    after = generate(gan.g_ema, 64, seed=0)
    hits_after = after[:, 0, :, 7].float().mean().item()
    assert hits_before < 0.3
    assert hits_after > 0.8, f"track 0 plays its pitch {hits_after:.0%} of the time"


def test_generate_is_deterministic_per_seed_and_temperature_samples():
    gan, _ = tiny_gan()
    a, b = generate(gan.g_ema, 8, seed=3), generate(gan.g_ema, 8, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.bool
    hot = generate(gan.g_ema, 8, seed=3, temperature=5.0)
    assert torch.equal(hot, generate(gan.g_ema, 8, seed=3, temperature=5.0))
    assert hot.sum(-1).max() <= 1 and not torch.equal(hot, a)
    assert not torch.equal(hot, generate(gan.g_ema, 8, seed=4, temperature=5.0))


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    gan, cfg = tiny_gan()
    train(gan, toy_batches(), cfg, lambda s, m: None)
    path = ckpt.save(tmp_path / "checkpoint_000006", gan, cfg, DATA)
    meta = json.loads((path / "config.json").read_text())
    assert meta["step"] == 6 and meta["config"]["preset"] == "cpu-tiny" and meta["data"]["feature_hash"] == "test"
    for name in ckpt.FILES[:-1]:
        torch.load(path / name, weights_only=True)  # plain tensors and dicts only
    fresh, _ = tiny_gan()
    torch.manual_seed(123)
    ckpt.restore(path, fresh)
    assert fresh.step == 6
    for a, b in zip(gan.g_ema.state_dict().values(), fresh.g_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh.opt_d.state_dict()["state"].keys() == gan.opt_d.state_dict()["state"].keys()
    g, cfg2, data, _ = ckpt.load_generator(path)
    assert torch.equal(generate(g, 4, seed=1), generate(gan.g_ema, 4, seed=1))
    assert ckpt.find_latest(tmp_path) == path


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    gan, cfg = tiny_gan()
    path = ckpt.save(tmp_path / "checkpoint_000001", gan, cfg, DATA)
    before = (path / "generator.pt").read_bytes()
    calls = {"n": 0}
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        ckpt.save(tmp_path / "checkpoint_000001", gan, cfg, DATA)
    assert (path / "generator.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000001"]
    ckpt.read_meta(path)
    (tmp_path / "checkpoint_000002").mkdir()  # an incomplete directory is never picked
    assert ckpt.find_latest(tmp_path) == path
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.read_meta(tmp_path / "checkpoint_000002")


def test_one_request_that_cannot_be_sampled_does_not_fail_its_batch_mates():
    """A temperature so low that softmax is NaN fails that request alone, with the project's own
    SamplingError; the others in the same forward get exactly what they get alone."""
    from musicgan.gan import Request, SamplingError, generate_many

    gan, _ = tiny_gan()
    good = [Request(2, seed=s, temperature=t) for s, t in ((1, 0.0), (2, 1.0), (3, 0.5))]
    poisoned = Request(2, seed=4, temperature=1e-300)
    out = generate_many(gan.g_ema, good[:2] + [poisoned] + good[2:], return_exceptions=True)
    assert isinstance(out[2], SamplingError) and "temperature" in str(out[2])
    for r, got in zip(good, out[:2] + out[3:]):
        assert torch.equal(got, generate_many(gan.g_ema, [r])[0])
    with pytest.raises(SamplingError):  # without return_exceptions the failure is raised
        generate_many(gan.g_ema, [poisoned])


def test_generate_many_with_the_leap_prior_is_batch_invariant_and_seeded():
    """Decoding step by step (argmax or seeded draws) keeps each request's bytes the same alone or
    batched, and the prior shapes what is drawn."""
    from musicgan.gan import Request, generate_many

    gan, _ = tiny_gan(**{"model.leap_prior": "true", "model.voice_register": "true"})
    with torch.no_grad():
        gan.g_ema.leap_logits.normal_()
    reqs = [Request(3, seed=1), Request(2, seed=2, temperature=0.8), Request(1, seed=3, temperature=1.5)]
    together = generate_many(gan.g_ema, reqs)
    for r, got in zip(reqs, together):
        assert got.dtype == torch.bool and got.sum(-1).max() <= 1
        assert torch.equal(got, generate_many(gan.g_ema, [r])[0])
    with torch.no_grad():
        gan.g_ema.leap_logits.fill_(-50.0)
        gan.g_ema.leap_logits[:, 0] = 50.0  # stay on the note: every voice holds its first pitch
    hot = generate_many(gan.g_ema, [Request(4, seed=5, temperature=1.0)])[0]
    idx = torch.where(hot.any(-1), hot.float().argmax(-1), -1)
    both = (idx[:, :, 1:] >= 0) & (idx[:, :, :-1] >= 0)
    assert both.any() and torch.equal(idx[:, :, 1:][both], idx[:, :, :-1][both]), "no leap while sounding"


def test_voice_statistics_on_a_hand_built_phrase():
    from musicgan.gan import voice_statistics

    x = torch.zeros(1, 2, 8, 24)
    x[0, 0, :4, 19] = 1   # upper voice: 19 for 4 steps, then 14 (a leap of -5)
    x[0, 0, 4:, 14] = 1
    x[0, 1, :, 7] = 1     # lower voice holds 7: distances 12, then 7
    pitches, steps, pairs = voice_statistics(x)
    assert pitches[0, 19] == 0.5 and pitches[0, 14] == 0.5 and pitches[1, 7] == 1.0
    m = 12  # steps: -12..12, then beyond an octave, then a rest in the pair
    assert torch.isclose(steps[0, m + 0], torch.tensor(6 / 7)) and torch.isclose(steps[0, m - 5], torch.tensor(1 / 7))
    assert steps[1, m] == 1.0
    assert pairs.shape == (1, 3 * m + 3)  # below -12, -12..24, above 24
    assert pairs[0, 1 + m + 12] == 0.5 and pairs[0, 1 + m + 7] == 0.5


def test_parallel_rates_agree_with_the_metric():
    from musicgan import metrics as M
    from musicgan.gan import parallel_rates

    x = torch.zeros(2, 4, 64, 48)
    for s in range(64):
        k = (s // 4) % 2 * 2  # every voice steps up a tone and back at each beat
        for track, pitch in enumerate((30, 23, 18, 6)):  # S-A a fifth; S-T, S-B, T-B octaves
            x[:, track, s, pitch + (k if track != 1 or s < 32 else 0)] = 1  # the alto holds from bar 3
    rates = parallel_rates(x, beat_steps=4)
    expect = M.voice_metrics(x.numpy() > 0, 16, ["s", "a", "t", "b"])["parallels_per_100"]
    assert torch.isclose(100 * rates.mean(), torch.tensor(expect, dtype=torch.float32), atol=1e-4)
    assert rates[0] < rates[1] == 1.0  # S-A parallel only while the alto moves; S-T throughout


def test_vertical_histograms_on_a_hand_built_phrase_agree_with_the_metric():
    from musicgan import metrics as M
    from musicgan.gan import vertical_histograms

    x = torch.zeros(1, 3, 16, 48)
    x[0, 0, :8, 31] = 1   # upper voice: 31, then 28
    x[0, 0, 8:, 28] = 1
    x[0, 1, :, 24] = 1    # middle voice holds 24: a fifth (7) below, then a major third (4)
    x[0, 2, :12, 12] = 1  # lower voice: 12 (an octave and a fifth below 31), silent for the last beat
    h = vertical_histograms(x, beat_steps=4)
    assert h.shape == (3, 12)
    assert h[0, 7] == 0.5 and h[0, 4] == 0.5                 # upper-middle: beats 31/24, 31/24, 28/24, 28/24
    assert torch.isclose(h[1, 7], torch.tensor(2 / 3)) and torch.isclose(h[1, 4], torch.tensor(1 / 3))
    assert h[2, 0] == 1.0                                    # middle-lower: octaves on the 3 shared beats
    expect = M.vertical_interval_histograms(x.numpy() > 0, 16)
    assert torch.allclose(h, torch.from_numpy(expect).float(), atol=1e-6)


def test_vertical_term_pulls_the_generator_towards_the_real_intervals():
    """With only the vertical-interval term (the critic's pull cancelled by a zero critic), the
    distance between G's interval classes and the real batch's falls."""
    gan, cfg = tiny_gan(**{"loss.vertical_weight": 1.0, "optim.lr_g": 3e-3})
    real, _ = next(toy_batches())
    for p in gan.d.parameters():
        torch.nn.init.zeros_(p)
    seen = [generator_step(gan, 16, None, cfg, torch.device("cpu"), real=real)["vertical_gap"]
            for _ in range(40)]
    assert seen[-1] < 0.5 * seen[0], seen[::8]


def test_voice_stats_loss_pulls_the_generator_towards_the_real_voices():
    """With only the feature-matching term (the critic's pull cancelled by a frozen zero critic), G's
    voice statistics move towards the real batch's."""
    gan, cfg = tiny_gan(**{"loss.voice_stats_weight": 1.0, "optim.lr_g": 3e-3})
    real, _ = next(toy_batches())
    for p in gan.d.parameters():
        torch.nn.init.zeros_(p)
    seen = [generator_step(gan, 16, None, cfg, torch.device("cpu"), real=real)["voice_stats"] for _ in range(40)]
    assert seen[-1] < 0.5 * seen[0], seen[::8]


# --- the masked generator in the loop -------------------------------------------------------------

def masked_gan(**over):
    cfg = load_preset("cpu-masked-tiny", [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    g, d = build_models(cfg.model, SHAPE, BARS, 1)
    return make_gan(g, d, cfg), cfg


def test_training_masks_only_for_a_masked_generator():
    from musicgan.gan import training_masks

    real, _ = next(toy_batches())
    gan, cfg = masked_gan()
    m = training_masks(gan.g, real, cfg)
    assert m.dtype == torch.bool and m.shape == (16, SHAPE[0], SHAPE[1])
    plain, cfg_plain = tiny_gan()
    assert training_masks(plain.g, real, cfg_plain) is None
    only_none, cfg_none = masked_gan(**{"mask.voice": 0, "mask.voices": 0, "mask.prompt": 0, "mask.region": 0})
    assert not training_masks(only_none.g, real, cfg_none).any()


@pytest.mark.parametrize("recon_weight", [0.0, 1.0])
def test_masked_phase_functions_report_their_keys_and_move_weights(recon_weight):
    gan, cfg = masked_gan(**{"loss.recon_weight": recon_weight})
    real, _ = next(toy_batches())
    before_d = [p.clone() for p in gan.d.parameters()]
    out = critic_step(gan, real, None, cfg)
    assert {"d_loss", "d_real", "d_fake", "gp", "wasserstein"} <= set(out)
    assert all(isinstance(v, float) and v == v for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_d, gan.d.parameters()))
    before_g = [p.clone() for p in gan.g.parameters()]
    out = generator_step(gan, 16, None, cfg, torch.device("cpu"), real=real)
    assert "g_loss" in out and ("recon" in out) == (recon_weight > 0)
    assert all(isinstance(v, float) and v == v for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_g, gan.g.parameters()))


def test_reconstruction_loss_on_hand_built_logits():
    import math

    from musicgan.gan import reconstruction_loss

    b, t, s, p = 2, 2, 8, 12
    real = torch.zeros(b, t, s, p)
    real[:, 0, :, 5] = 1                 # track 0 holds pitch 5; track 1 rests throughout
    mask = torch.zeros(b, t, s, dtype=torch.bool)
    mask[:, 0] = True                    # track 0 known, track 1 written
    uniform = torch.zeros(b, t, s, p + 1)
    assert math.isclose(reconstruction_loss(uniform, real, mask).item(), math.log(p + 1), rel_tol=1e-6)
    # the rest class is the target where a track is silent: favour it by log(p) -> probability 1/2
    rest = uniform.clone()
    rest[..., p] = math.log(p)
    assert math.isclose(reconstruction_loss(rest, real, mask).item(), math.log(2), rel_tol=1e-6)
    # known cells do not count, however wrong their logits
    wrong_known = rest.clone()
    wrong_known[:, 0, :, 0] = 50.0
    assert math.isclose(reconstruction_loss(wrong_known, real, mask).item(), math.log(2), rel_tol=1e-6)
    # examples with nothing known do not count: only example 0's written cells are scored
    partial = mask.clone()
    partial[1] = False
    mixed = rest.clone()
    mixed[1] = 0.0                       # example 1 uniform: would pull the mean towards log 13
    assert math.isclose(reconstruction_loss(mixed, real, partial).item(), math.log(2), rel_tol=1e-6)
    # all known, or nothing known: nothing to score
    assert reconstruction_loss(uniform, real, torch.ones_like(mask)).item() == 0.0
    assert reconstruction_loss(uniform, real, torch.zeros_like(mask)).item() == 0.0
    # binary output: one sigmoid per pitch, logits 0 -> log 2 per pitch
    assert math.isclose(reconstruction_loss(torch.zeros(b, t, s, p), real, mask).item(), math.log(2), rel_tol=1e-6)


def test_reconstruction_term_lowers_the_reconstruction_loss_on_a_fixed_batch():
    """With only the reconstruction term (the critic zeroed and frozen), G learns the toy batch's
    unknown voice from the known one."""
    gan, cfg = masked_gan(**{"loss.recon_weight": 1.0, "optim.lr_g": 3e-3, "mask.none": 0, "mask.prompt": 0,
                             "mask.region": 0, "mask.voices": 0})
    real, _ = next(toy_batches())
    for p in gan.d.parameters():
        torch.nn.init.zeros_(p)
    torch.manual_seed(1)
    seen = [generator_step(gan, 16, None, cfg, torch.device("cpu"), real=real)["recon"] for _ in range(16)]
    assert seen[-1] < 0.5 * seen[0], seen[::4]


def test_critic_classifier_learns_the_styles_and_pulls_the_generator_towards_the_asked_one():
    """Two toy styles: label 0 holds pitch index 2 in every track, label 1 pitch index 9. With
    ``model.critic_classifier`` the critic's head learns to name them from real phrases, and G's
    AC-GAN term is reported and moves it."""
    cfg = load_preset("cpu-tiny", ["model.critic_classifier=true", "loss.aux_weight=1", "optim.lr_d=1e-2"])
    torch.manual_seed(0)
    g, d = build_models(cfg.model, SHAPE, BARS, 2)
    gan = make_gan(g, d, cfg)
    labels = torch.tensor([0, 1] * 8)
    x = torch.zeros(16, *SHAPE)
    x[labels == 0, :, :, 2] = 1
    x[labels == 1, :, :, 9] = 1
    score, logits = d(x, labels)
    assert score.shape == (16,) and logits.shape == (16, 2)
    first = critic_step(gan, x, labels, cfg)["aux_real"]
    for _ in range(20):
        out = critic_step(gan, x, labels, cfg)
    assert out["aux_acc_real"] == 1.0 and out["aux_real"] < 0.5 * first
    g_out = generator_step(gan, 16, labels, cfg, torch.device("cpu"), real=x)
    assert g_out["aux_fake"] > 0
    # one label: no head (nothing to name)
    _, d1 = build_models(cfg.model, SHAPE, BARS, 1)
    assert d1.classify is None and d1(x).shape == (16,)
