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


def test_label_register_puts_each_label_in_its_own_register():
    torch.manual_seed(0)
    g = Generator(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, latent_dim=8, track_latent_dim=4,
                  channels=16, n_labels=2, voice_register=True, label_register=True)
    with torch.no_grad():
        g.label_register[0, :, 3] = 1e4   # label 0: every voice on pitch 3
        g.label_register[1, :, 17] = 1e4  # label 1: every voice on pitch 17
    z, zt = g.sample_latents(4)
    idx = g(z, zt, torch.tensor([0, 1, 1, 0])).argmax(-1)  # [4, tracks, steps]
    assert torch.equal(idx, torch.tensor([3, 17, 17, 3])[:, None, None].expand_as(idx))
    # one label: no per-label table (nothing to tell apart)
    assert Generator(n_tracks=3, n_bars=2, steps_per_bar=16, n_pitches=24, channels=16,
                     label_register=True).label_register is None


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


# --- the masked (inpainting) generator ------------------------------------------------------------

import pytest  # noqa: E402

MASKED_SHAPE, MASKED_BARS = [4, 64, 48], 4  # soprano..bass, 4 bars of 16 steps, 48 pitches


def masked_tiny(seed: int = 0):
    """cpu-masked-tiny's generator and critic (time_upsample 2, leap prior, voice register)."""
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    torch.manual_seed(seed)
    return build_models(load_preset("cpu-masked-tiny").model, MASKED_SHAPE, MASKED_BARS, 1)


def random_rolls(n: int, seed: int) -> torch.Tensor:
    """Monophonic bool rolls ``[n, 4, 64, 48]``: a random pitch or a rest per track and step."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(-1, MASKED_SHAPE[2], (n, *MASKED_SHAPE[:2]), generator=gen)
    roll = torch.zeros(n, *MASKED_SHAPE, dtype=torch.bool)
    on = idx >= 0
    roll[on.nonzero(as_tuple=True) + (idx[on],)] = True
    return roll


def mask_of(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    from musicgan.masks import draw_masks

    return draw_masks(n, 4, MASKED_BARS, 16, {kind: 1.0}, generator=torch.Generator().manual_seed(seed))


def perturb_context_layers(g, scale: float = 0.5) -> None:
    """The zero-initialised context layers, made non-zero (as training would)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (g.context_pitch, g.context_local, g.context_key):
            for p in layer.parameters():
                p.copy_(scale * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("kind", ["voice", "voices", "prompt", "region", "none"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_masked_generator_returns_the_known_cells_exactly_and_stays_monophonic(kind, train_mode):
    g, _ = masked_tiny()
    perturb_context_layers(g)
    g.train(train_mode)
    real, mask = random_rolls(6, 1), mask_of(kind, 6)
    z, zt = g.sample_latents(6, generator=torch.Generator().manual_seed(0))
    x, logits = g(z, zt, None, real.float(), mask, return_logits=True)
    assert x.shape == (6, *MASKED_SHAPE) and logits.shape == (6, 4, 64, 49)
    assert torch.equal(x.detach()[mask], real.float()[mask])
    assert x.detach().sum(-1).max() <= 1.0
    assert set(torch.unique(x.detach()).tolist()) <= {0.0, 1.0}
    if kind != "none":
        assert mask.any() and (~mask).any()


@pytest.mark.parametrize("kind", ["voice", "prompt", "region"])
def test_generate_many_returns_the_known_cells_exactly(kind):
    from musicgan.gan import Request, generate_many

    g, _ = masked_tiny()
    perturb_context_layers(g)
    real, mask = random_rolls(5, 2), mask_of(kind, 5, seed=3)
    for temperature in (0.0, 1.0):
        out = generate_many(g, [Request(5, 9, temperature, context=real, mask=mask)])[0]
        assert out.dtype == torch.bool and out.shape == (5, *MASKED_SHAPE)
        assert torch.equal(out[mask], real[mask])
        assert out.sum(-1).max() <= 1


def test_context_layers_start_at_zero_and_each_steers_the_logits_once_trained():
    """The zero-initialised layers leave a fresh masked G as it was; once non-zero, each of them
    (a voice's pitch logits, the local time x pitch conv, the key) moves the logits for a context."""
    g, _ = masked_tiny()
    g.eval()
    real, mask = random_rolls(3, 4), mask_of("voice", 3)
    z, zt = g.sample_latents(3, generator=torch.Generator().manual_seed(0))
    for layer in (g.context_pitch, g.context_local, g.context_key):
        assert not any(p.any() for p in layer.parameters())
    with torch.no_grad():
        base = g.logits(z, zt, None, real.float(), mask)
        for layer in (g.context_pitch, g.context_local, g.context_key):
            saved = [p.clone() for p in layer.parameters()]
            for p in layer.parameters():
                p.normal_(0, 0.5)
            assert not torch.allclose(g.logits(z, zt, None, real.float(), mask), base), layer
            for p, s in zip(layer.parameters(), saved):
                p.copy_(s)
        assert torch.equal(g.logits(z, zt, None, real.float(), mask), base)


def test_the_context_changes_the_written_cells():
    """Same latents, same mask, different known notes: the generated (unknown) cells differ."""
    g, _ = masked_tiny()
    perturb_context_layers(g)
    g.eval()
    mask = mask_of("voice", 8)
    z, zt = g.sample_latents(8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = g(z, zt, None, random_rolls(8, 5).float(), mask)
        b = g(z, zt, None, random_rolls(8, 6).float(), mask)
        a_again = g(z, zt, None, random_rolls(8, 5).float(), mask)
    unknown = ~mask
    assert torch.equal(a, a_again)
    assert not torch.equal(a[unknown], b[unknown])
    # unknown cells of the context are ignored
    noisy = random_rolls(8, 5).float()
    noisy[unknown] = random_rolls(8, 7).float()[unknown]
    with torch.no_grad():
        assert torch.equal(g(z, zt, None, noisy, mask), a)


def test_leap_prior_leads_on_from_a_known_note():
    """With a prior that all but forbids any leap, the soprano written after a known bar holds the
    known bar's last pitch: the decoder starts the next step from the given note, not from its own."""
    g, _ = masked_tiny()
    g.eval()
    with torch.no_grad():
        g.leap_logits.zero_()
        g.leap_logits[:, 0] = 100.0
        g.rest_head.bias.fill_(-1e4)  # no rests, so every step carries the note on
    real = torch.zeros(4, *MASKED_SHAPE)
    real[:, 0, :16, 30] = 1
    mask = torch.zeros(4, 4, 64, dtype=torch.bool)
    mask[:, 0, :16] = True
    z, zt = g.sample_latents(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = g(z, zt, None, real, mask)
        free = g(z, zt)
    assert (x[:, 0, 16:].argmax(-1) == 30).all()
    assert (free[:, 0].argmax(-1) != 30).any()  # unconditionally it holds whatever it drew first


def test_generate_many_is_batch_invariant_with_masked_and_unmasked_requests():
    from musicgan.gan import Request, generate_many

    g, _ = masked_tiny()
    perturb_context_layers(g)
    reqs = [Request(3, 5, 0.0, context=random_rolls(3, 1), mask=mask_of("voice", 3)),
            Request(2, 6, 1.0),
            Request(2, 7, 1.0, context=random_rolls(2, 2), mask=mask_of("region", 2, seed=1), track_seed=11),
            Request(1, 8, 0.0, context=random_rolls(1, 3), mask=mask_of("prompt", 1, seed=2))]
    together = generate_many(g, reqs)
    for r, out in zip(reqs, together):
        assert torch.equal(generate_many(g, [r])[0], out)
    assert torch.equal(generate_many(g, reqs[::-1])[::-1][2], together[2])
    assert together[1].shape == (2, *MASKED_SHAPE)


def test_track_seed_sets_the_voices_and_seed_the_phrase():
    """Two windows of one piece: their own seeds, one track seed. The track latents come from the
    track seed alone, the phrase latent from the seed."""
    from musicgan.gan import Request, _sample, generate_many

    g, _ = masked_tiny()
    a, b, c, d = generate_many(g, [Request(4, 1, 1.0, track_seed=10), Request(4, 1, 1.0, track_seed=10),
                                   Request(4, 1, 1.0, track_seed=12), Request(4, 2, 1.0, track_seed=10)])
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)
    z, zt = g.sample_latents(4, generator=torch.Generator().manual_seed(10))
    z1, _ = g.sample_latents(4, generator=torch.Generator().manual_seed(1))
    g.eval()
    with torch.no_grad():  # seed 1's phrase latent with seed 10's voices, decoded at argmax
        logits = g.logits(z1, zt)
        want = _sample(g, Request(4, 1, track_seed=10), torch.Generator(), logits)
    assert torch.equal(generate_many(g, [Request(4, 1, track_seed=10)])[0], want)


def test_unmasked_model_refuses_known_notes_with_a_sampling_error():
    from musicgan.gan import Request, SamplingError, generate_many
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    g, _ = build_models(load_preset("cpu-tiny").model, MASKED_SHAPE, MASKED_BARS, 1)
    mask = mask_of("voice", 2)
    with pytest.raises(SamplingError, match="not a masked model"):
        generate_many(g, [Request(2, 0, context=random_rolls(2, 0), mask=mask)])
    # a mask that knows nothing is no request for known notes
    out = generate_many(g, [Request(2, 0, context=random_rolls(2, 0), mask=torch.zeros_like(mask))])[0]
    assert torch.equal(out, generate_many(g, [Request(2, 0)])[0])


def test_unmasked_model_returns_the_sampling_error_in_place_with_return_exceptions():
    from musicgan.gan import Request, SamplingError, generate_many
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    g, _ = build_models(load_preset("cpu-tiny").model, MASKED_SHAPE, MASKED_BARS, 1)
    out = generate_many(g, [Request(1, 0), Request(2, 0, context=random_rolls(2, 0), mask=mask_of("voice", 2))],
                        return_exceptions=True)
    assert isinstance(out[1], SamplingError)
    assert torch.equal(out[0], generate_many(g, [Request(1, 0)])[0])


def test_masked_critic_sees_the_mask():
    """Same roll, different mask: a masked critic scores it differently (its onset stream reads the
    mask); with no mask it reads nothing known."""
    _, d = masked_tiny()
    x = random_rolls(3, 0).float()
    m = mask_of("voice", 3)
    s_masked, s_none = d(x, None, m), d(x, None, torch.zeros_like(m))
    assert s_masked.shape == (3,)
    assert not torch.allclose(s_masked, s_none)
    assert torch.equal(d(x), s_none)
