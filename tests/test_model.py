"""Generator and critic shapes, output constraints, conditioning, and gradient flow (tiny models)."""

from __future__ import annotations

import torch

from musicgan.model import Critic, Generator, straight_through_onehot


def tiny(output="monophonic", n_labels=1):
    g = Generator(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, latent_dim=8, track_latent_dim=4,
                  channels=16, n_labels=n_labels, output=output)
    d = Critic(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, channels=16, n_labels=n_labels)
    return g, d


def test_monophonic_output_is_one_pitch_or_rest_per_track_and_step():
    torch.manual_seed(0)
    g, d = tiny()
    z, zt = g.sample_latents(5)
    x = g(z, zt)
    assert x.shape == (5, 3, 32, 24)
    assert set(torch.unique(x.detach()).tolist()) <= {0.0, 1.0}
    assert x.detach().sum(-1).max() <= 1.0
    assert d(x).shape == (5,)


def test_binary_output_may_hold_chords():
    torch.manual_seed(0)
    g, _ = tiny("binary")
    z, zt = g.sample_latents(4)
    x = g(z, zt).detach()
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    assert x.shape == (4, 3, 32, 24)


def test_straight_through_passes_softmax_gradients():
    logits = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    y = straight_through_onehot(logits)
    assert y.tolist() == [[1.0, 0.0, 0.0]]
    (y * torch.tensor([[0.0, 1.0, 0.0]])).sum().backward()
    soft = torch.softmax(logits.detach(), -1)[0]
    # d soft_1 / d logits = soft_1 * (onehot_1 - soft)
    expected = soft[1] * (torch.tensor([0.0, 1.0, 0.0]) - soft)
    assert torch.allclose(logits.grad[0], expected, atol=1e-6)


def test_critic_gradient_reaches_generator_parameters():
    torch.manual_seed(0)
    g, d = tiny()
    z, zt = g.sample_latents(4)
    d(g(z, zt)).mean().backward()
    assert all(p.grad is not None for p in g.pitch_head.parameters())
    assert g.pitch_head.weight.grad.abs().sum() > 0


def test_labels_change_the_output_and_the_score():
    torch.manual_seed(0)
    g, d = tiny(n_labels=2)
    z, zt = g.sample_latents(6)
    a = g.logits(z, zt, torch.zeros(6, dtype=torch.long))
    b = g.logits(z, zt, torch.ones(6, dtype=torch.long))
    assert not torch.allclose(a, b)
    x = g(z, zt, torch.zeros(6, dtype=torch.long))
    with torch.no_grad():  # projection: an untrained embedding still moves the score
        d.embed.weight.normal_()
    assert not torch.allclose(d(x, torch.zeros(6, dtype=torch.long)), d(x, torch.ones(6, dtype=torch.long)))


def test_leap_prior_ties_each_step_to_the_one_before():
    """With the leap prior, a step's note depends on the note before it: a prior that rewards staying
    (and punishes any leap) turns random per-step logits into one held note per voice."""
    torch.manual_seed(0)
    g = Generator(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, latent_dim=8, track_latent_dim=4,
                  channels=16, time_upsample=2, leap_prior=True)
    logits = torch.randn(4, 3, 32, 25)
    free = straight_through_onehot(logits)
    assert (free.argmax(-1)[:, :, ::2] != free.argmax(-1)[:, :, :1]).any(), "per-step argmax wanders"
    with torch.no_grad():
        g.leap_logits.fill_(-100.0)
        g.leap_logits[:, 0] = 100.0  # a leap of 0 semitones: stay
    held = g.decode(logits, straight_through_onehot)
    assert held.shape == logits.shape and torch.equal(held.sum(-1), torch.ones(4, 3, 32))
    idx = held.argmax(-1)
    assert torch.equal(idx, idx[:, :, :1].expand_as(idx)), "every voice holds its first note"
    assert torch.equal(idx[:, :, :1], logits[:, :, :1].argmax(-1))  # the first step is the logits' own choice
    # the prior's gradient reaches its table through the straight-through choices
    with torch.no_grad():
        g.leap_logits.zero_()
    z, zt = g.sample_latents(2)
    Critic(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, channels=16)(g(z, zt)).sum().backward()
    assert g.leap_logits.grad is not None and g.leap_logits.grad.abs().sum() > 0


def test_voice_register_gives_each_voice_its_own_pitches():
    torch.manual_seed(0)
    g = Generator(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, latent_dim=8, track_latent_dim=4,
                  channels=16, voice_register=True)
    with torch.no_grad():
        for track, pitch in enumerate((20, 12, 4)):
            g.register_bias[track, pitch] = 1e4
    z, zt = g.sample_latents(3)
    idx = g(z, zt).argmax(-1)
    assert torch.equal(idx, torch.tensor([20, 12, 4])[None, :, None].expand_as(idx))


def test_critic_register_stream_sees_a_voice_moved_by_an_octave():
    """An octave shift leaves pitch classes, interval classes and onsets alone; the register stream
    tells the two phrases apart by absolute pitch."""
    torch.manual_seed(0)
    d = Critic(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, channels=16, register=True)
    x = torch.zeros(1, 3, 32, 24)
    x[:, 0, :, 5] = 1
    x[:, 1, :, 2] = 1
    moved = x.clone()
    moved[:, 1] = torch.roll(x[:, 1], 12, -1)
    flat = lambda r: r.permute(0, 1, 3, 2).reshape(1, 3 * 24, 32)  # noqa: E731
    assert not torch.allclose(d.register(flat(x)), d.register(flat(moved)))
    assert d(x).shape == (1,)


def test_default_model_config_builds_the_old_architecture():
    """Old checkpoints' configs have none of the new fields: their defaults rebuild the old model,
    state_dict key for key, so those checkpoints load unchanged."""
    from musicgan.config import Config, from_dict, to_dict
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    old = to_dict(Config())["model"]
    for key in ("harmony_head", "voice_register", "leap_prior", "critic_register"):
        old.pop(key)
    g, d = build_models(from_dict(Config, {"model": old}).model, [4, 64, 48], 4, 1)
    assert not any(k.startswith(("register_bias", "leap_logits")) for k in g.state_dict())
    assert not any(k.startswith("register.") for k in d.state_dict())
    assert any(k.startswith("harmony_head.") for k in g.state_dict())
    g2, d2 = build_models(load_preset("cpu").model, [4, 64, 48], 4, 1)
    assert {"register_bias", "leap_logits"} <= set(g2.state_dict())
    assert any(k.startswith("register.") for k in d2.state_dict())
