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
