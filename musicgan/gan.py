"""The GAN loop, pure PyTorch: no Ray import, testable on a CPU with a tiny model.

Each phase is a function returning ``dict[str, float]``: :func:`critic_step`, :func:`generator_step`.
G's loss may add three terms measured against the last real batch: feature matching on the voices'
statistics (:func:`voice_statistics`, ``loss.voice_stats_weight``) and the gap in parallel fifths and
octaves (:func:`parallel_rates`, ``loss.parallels_weight``), and the gap in vertical interval classes
(:func:`vertical_histograms`, ``loss.vertical_weight``).
:func:`train` runs them for a number of generator steps and reports through a callback, so the same
loop runs under Ray Train (where the callback calls ``ray.train.report``), in a plain process, or
in a test.

G and D may be wrapped in separate ``DistributedDataParallel`` modules. The G step runs the critic
unwrapped with its parameters frozen, so no D gradient is all-reduced there; the critic step runs G
unwrapped under ``no_grad``.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from musicgan.config import Config


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


@dataclass
class GAN:
    g: nn.Module
    d: nn.Module
    g_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0


def make_gan(g: nn.Module, d: nn.Module, cfg: Config) -> GAN:
    o = cfg.optim
    g_ema = copy.deepcopy(unwrap(g)).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2))
    return GAN(g, d, g_ema, opt_g, opt_d)


def _autocast(cfg: Config, device: torch.device):
    if cfg.train.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _critic(d: nn.Module, x: torch.Tensor, labels: torch.Tensor | None, mask: torch.Tensor | None = None):
    """``(score, aux logits or None)``: a critic with an auxiliary classifier returns ``(score, *logits)``.
    A masked critic also takes the mask."""
    out = d(x, labels) if mask is None else d(x, labels, mask)
    if isinstance(out, tuple):
        return out[0].float(), out[1:]
    return out.float(), None


def aux_loss(aux: tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
    """AC-GAN classifier loss: the summed cross-entropy of each head against its label column (a
    1-D ``labels`` is one column)."""
    labels = labels[:, None] if labels.dim() == 1 else labels
    return sum(torch.nn.functional.cross_entropy(logits.float(), labels[:, i]) for i, logits in enumerate(aux))


def training_masks(g: nn.Module, real: torch.Tensor, cfg: Config) -> torch.Tensor | None:
    """One mask per example of ``real`` from the configured mixture, for a masked generator (else None)."""
    from musicgan.masks import draw_masks

    if not getattr(g, "masked", False):
        return None
    b, t, steps, _ = real.shape
    return draw_masks(b, t, g.n_bars, steps // g.n_bars, cfg.mask.weights(), cfg.mask.bass_share,
                      device=real.device)


def critic_step(gan: GAN, real: torch.Tensor, labels: torch.Tensor | None, cfg: Config) -> dict[str, float]:
    """One critic update on a real batch and as many generated phrases. A masked generator fills in
    the real phrases under masks drawn for them, and the critic judges each phrase with its mask:
    the given cells are the same on both sides, so only the generated cells can give a fake away."""
    g = unwrap(gan.g)
    b = real.shape[0]
    mask = training_masks(g, real, cfg)
    with torch.no_grad(), _autocast(cfg, real.device):
        z, zt = g.sample_latents(b, device=real.device)
        fake = (g(z, zt, labels) if mask is None else g(z, zt, labels, real, mask)).float()
    with _autocast(cfg, real.device):
        scores, aux = _critic(gan.d, torch.cat([real, fake]), None if labels is None else torch.cat([labels, labels]),
                              None if mask is None else torch.cat([mask, mask]))
    d_real, d_fake = scores[:b], scores[b:]
    out: dict[str, float] = {}
    if cfg.loss.kind == "wgan-gp":
        alpha = torch.rand(b, 1, 1, 1, device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        # The penalty needs a double backward; it stays in fp32 for stability.
        grad = torch.autograd.grad(_critic(gan.d, mixed, labels, mask)[0].sum(), mixed, create_graph=True)[0]
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss = d_fake.mean() - d_real.mean() + cfg.loss.gp_weight * gp
        out["gp"] = gp.item()
        out["wasserstein"] = (d_real.mean() - d_fake.mean()).item()
    else:
        loss = torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean()
    if aux is not None and labels is not None:
        # the classifier learns from real clips only; fake ones would teach it the generator's mistakes
        ac = aux_loss(tuple(a[:b] for a in aux), labels)
        loss = loss + cfg.loss.aux_weight * ac
        out["aux_real"] = ac.item()
        out["aux_acc_real"] = (aux[0][:b].argmax(1) == (labels if labels.dim() == 1 else labels[:, 0])).float().mean().item()
    gan.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    gan.opt_d.step()
    out.update(d_loss=loss.item(), d_real=d_real.mean().item(), d_fake=d_fake.mean().item())
    return out


def voice_statistics(x: torch.Tensor, max_interval: int = 12) -> list[torch.Tensor]:
    """Batch-mean histograms of a roll ``[B, tracks, steps, pitches]``, differentiable through a
    straight-through roll: each track's pitches ``[tracks, P]``; each track's step-to-step intervals
    ``[tracks, 2 m + 2]`` (-m..m semitones between consecutive sounding steps, then leaps beyond m,
    then a share of pairs with a rest); adjacent tracks' signed distances (upper minus lower)
    ``[tracks - 1, 3 m + 3]`` (-m..2m, then below and above). Each histogram sums to 1."""
    x = x.float()
    b, t, s, p = x.shape
    m = max_interval

    def shifted(a, c, k):  # sum over pitch of a[pitch] * c[pitch + k]
        if k >= 0:
            return (a[..., : p - k] * c[..., k:]).sum(-1) if k < p else a.sum(-1) * 0
        return (a[..., -k:] * c[..., : p + k]).sum(-1) if -k < p else a.sum(-1) * 0

    pitches = x.sum(2) / x.sum((2, 3)).clamp_min(1.0)[..., None]
    stats = [pitches.mean(0)]
    a, c = x[:, :, :-1], x[:, :, 1:]
    both = a.sum(-1) * c.sum(-1)                                            # [B, t, s-1]
    near = torch.stack([shifted(a, c, k) for k in range(-m, m + 1)], -1)   # [B, t, s-1, 2m+1]
    steps = torch.cat([near, (both - near.sum(-1))[..., None], (1 - both)[..., None]], -1)
    stats.append(steps.mean((0, 2)))
    if t > 1:
        upper, lower = x[:, :-1], x[:, 1:]
        both = upper.sum(-1) * lower.sum(-1)
        # signed distance d = upper - lower: upper[pitch] * lower[pitch - d] = lower[q] * upper[q + d]
        near = torch.stack([shifted(lower, upper, k) for k in range(-m, 2 * m + 1)], -1)
        below = sum(shifted(lower, upper, k) for k in range(-p + 1, -m)) if p > m + 1 else both * 0
        above = both - near.sum(-1) - below
        pairs = torch.cat([below[..., None], near, above[..., None]], -1)   # [B, t-1, s, 3m+3]
        stats.append((pairs / both.sum((0, 2))[None, :, None, None].clamp_min(1.0)).sum((0, 2)))
    return stats


def voice_stats_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Feature matching on :func:`voice_statistics`: the summed L1 distances, averaged per track."""
    with torch.no_grad():
        target = voice_statistics(real)
    return sum((f - r).abs().sum(-1).mean() for f, r in zip(voice_statistics(fake), target))


def parallel_rates(x: torch.Tensor, beat_steps: int) -> torch.Tensor:
    """Per voice pair, the share of consecutive-beat transitions (both voices sounding) that are
    parallel fifths or octaves: both voices move the same way and their interval class (the upper
    voice's pitch class minus the lower's) is 7 at both beats, or 0 at both. As in
    :mod:`musicgan.metrics`, but differentiable through a straight-through roll (the upper voice is
    taken to stay above). ``[pairs]``."""
    x = x.float()[:, :, ::beat_steps]                                       # [B, t, beats, P]
    b, t, n, p = x.shape
    chroma = x.reshape(b, t, n, p // 12, 12).sum(3)
    below = torch.cumsum(x, -1) - x                                         # mass strictly below each pitch
    a, c = x[:, :, :-1], x[:, :, 1:]
    up = (c * below[:, :, :-1]).sum(-1)                                    # [B, t, n-1]: moved up
    down = (c * (a.sum(-1, keepdim=True) - below[:, :, :-1] - a)).sum(-1)  # moved down
    sounding = x.sum(-1)
    rates = []
    for i in range(t):
        for j in range(i + 1, t):
            fifth = (chroma[:, i] * torch.roll(chroma[:, j], 7, -1)).sum(-1)   # j's class = i's - 7
            octave = (chroma[:, i] * chroma[:, j]).sum(-1)
            perfect = fifth[:, :-1] * fifth[:, 1:] + octave[:, :-1] * octave[:, 1:]
            parallel = perfect * (up[:, i] * up[:, j] + down[:, i] * down[:, j])
            both = sounding[:, i, :-1] * sounding[:, j, :-1] * sounding[:, i, 1:] * sounding[:, j, 1:]
            rates.append(parallel.sum() / both.sum().clamp_min(1.0))
    return torch.stack(rates) if rates else x.new_zeros(0)


def vertical_histograms(x: torch.Tensor, beat_steps: int) -> torch.Tensor:
    """Per voice pair (all pairs, upper voice first), the distribution of the interval class (the
    upper voice's pitch class minus the lower's, mod 12) over quarter-note beats where both sound.
    As :func:`musicgan.metrics.vertical_interval_histograms`, but differentiable through a
    straight-through roll (the upper voice is taken to stay above). ``[pairs, 12]``."""
    x = x.float()[:, :, ::beat_steps]
    b, t, n, p = x.shape
    chroma = x.reshape(b, t, n, p // 12, 12).sum(3)                        # [B, t, beats, 12]
    joint = torch.einsum("binc,bjnd->ijcd", chroma, chroma)                 # [t, t, 12, 12] class pairs
    classes = torch.arange(12, device=x.device)
    lower = (classes[None, :] - classes[:, None]) % 12                     # [k, c]: c - k
    i, j = torch.triu_indices(t, t, 1, device=x.device)
    pair = joint[i, j]                                                      # [pairs, 12 upper, 12 lower]
    hist = pair[:, classes[None, :].expand(12, 12), lower].sum(-1)          # [pairs, k]
    return hist / hist.sum(-1, keepdim=True).clamp_min(1.0)


def reconstruction_loss(logits: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of G's logits ``[B, tracks, steps, P (+1 rest)]`` against the real notes (a
    rest where a monophonic track is silent) in the cells G writes, over examples where some cell is
    known. 0 when no example has both known and unknown cells."""
    real = real.float()
    if logits.shape[-1] == real.shape[-1] + 1:   # monophonic: one class per step, the last a rest
        target = torch.where(real.sum(-1) > 0, real.argmax(-1), real.shape[-1])
        ce = torch.nn.functional.cross_entropy(logits.float().flatten(0, 2), target.flatten(),
                                               reduction="none").view(target.shape)
    else:                                          # binary: one sigmoid per pitch
        ce = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), real, reduction="none").mean(-1)
    written = (~mask) & mask.flatten(1).any(1)[:, None, None]
    return (ce * written).sum() / written.sum().clamp_min(1)


def generator_step(gan: GAN, batch_size: int, labels: torch.Tensor | None, cfg: Config,
                   device: torch.device, real: torch.Tensor | None = None) -> dict[str, float]:
    """One generator update against the current critic (and, with ``loss.voice_stats_weight``, the
    voice statistics of the ``real`` batch). A masked generator fills in ``real`` under fresh masks."""
    d = unwrap(gan.d)
    d.requires_grad_(False)
    mask = training_masks(unwrap(gan.g), real, cfg) if real is not None else None
    try:
        with _autocast(cfg, device):
            z, zt = unwrap(gan.g).sample_latents(batch_size, device=device)
            out = {}
            if mask is None:
                fake = gan.g(z, zt, labels)
            else:
                fake, logits = gan.g(z, zt, labels, real, mask, return_logits=True)
            score, aux = _critic(d, fake, labels, mask)
            loss = -score.mean()
            if mask is not None and cfg.loss.recon_weight > 0:
                rec = reconstruction_loss(logits, real, mask)
                loss = loss + cfg.loss.recon_weight * rec
                out["recon"] = rec.item()
            if cfg.loss.voice_stats_weight > 0 and real is not None:
                vs = voice_stats_loss(fake, real)
                loss = loss + cfg.loss.voice_stats_weight * vs
                out["voice_stats"] = vs.item()
            if cfg.loss.parallels_weight > 0 and real is not None:
                beat = unwrap(gan.g).steps_per_bar // 4
                with torch.no_grad():
                    target = parallel_rates(real, beat)
                rates = parallel_rates(fake, beat)
                # per 100 transitions, as the metric reports them
                par = 100 * (rates - target).abs().mean()
                loss = loss + cfg.loss.parallels_weight * par
                out["parallels_gap_per_100"] = par.item()
            if cfg.loss.vertical_weight > 0 and real is not None:
                beat = unwrap(gan.g).steps_per_bar // 4
                with torch.no_grad():
                    target = vertical_histograms(real, beat)
                vert = 0.5 * (vertical_histograms(fake, beat) - target).abs().sum(-1).mean()
                loss = loss + cfg.loss.vertical_weight * vert
                out["vertical_gap"] = vert.item()  # not the evaluation's vertical_distance
            if aux is not None and labels is not None:  # AC-GAN: make clips the critic names as asked
                ac = aux_loss(aux, labels)
                loss = loss + cfg.loss.aux_weight * ac
                out["aux_fake"] = ac.item()
        gan.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        gan.opt_g.step()
    finally:
        d.requires_grad_(True)
    return {"g_loss": loss.item(), **out}


@torch.no_grad()
def ema_update(g_ema: nn.Module, g: nn.Module, decay: float) -> None:
    for p_ema, p in zip(g_ema.parameters(), unwrap(g).parameters()):
        p_ema.lerp_(p.detach(), 1 - decay)
    for b_ema, b in zip(g_ema.buffers(), unwrap(g).buffers()):
        b_ema.copy_(b)


Batch = tuple[torch.Tensor, torch.Tensor | None]


def train(gan: GAN, batches: Iterator[Batch], cfg: Config, on_step: Callable[[int, dict[str, float]], None],
          device: torch.device | None = None) -> GAN:
    """Run generator steps from ``gan.step`` to ``cfg.train.total_steps``.

    ``batches`` yields ``(real, labels)`` forever. After each generator step, ``on_step(step,
    metrics)`` gets the 1-based step count and the averaged phase metrics; it may checkpoint,
    evaluate or report.
    """
    device = device or torch.device("cpu")
    gan.g.train()
    gan.d.train()
    o = cfg.optim
    while gan.step < cfg.train.total_steps:
        scale = 1.0 - (1.0 - o.lr_final_frac) * gan.step / max(cfg.train.total_steps - 1, 1)
        for opt, lr in ((gan.opt_g, o.lr_g), (gan.opt_d, o.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * scale
        sums: dict[str, float] = {}
        for _ in range(cfg.loss.critic_steps):
            real, labels = next(batches)
            for k, v in critic_step(gan, real, labels, cfg).items():
                sums[k] = sums.get(k, 0.0) + v / cfg.loss.critic_steps
        sums.update(generator_step(gan, real.shape[0], labels, cfg, device, real=real))
        ema_update(gan.g_ema, gan.g, cfg.optim.ema_decay)
        gan.step += 1
        on_step(gan.step, sums)
    return gan


class SamplingError(ValueError):
    """A request whose own parameters make its notes impossible to sample (e.g. a temperature so
    low that the softened distribution is not finite). Its input is at fault, not the model."""


@dataclass(frozen=True)
class Request:
    """One caller's share of a batched forward: ``n`` phrases from its own seed."""

    n: int
    seed: int
    temperature: float = 0.0
    threshold: float = 0.5
    label: int | None = None
    phrases_per_sample: int = 1
    """Consecutive phrases that make one sample: they share each track's latent (its "voice")."""
    context: torch.Tensor | None = None
    """Masked generators: the known roll, bool ``[n, tracks, steps, pitches]`` (only cells under ``mask`` count)."""
    mask: torch.Tensor | None = None
    """Masked generators: bool ``[n, tracks, steps]``, true where ``context`` is known. None = nothing known."""
    track_seed: int | None = None
    """Draw the track latents (the voices) from this seed instead of ``seed``: the windows of one long
    piece share their voices while each draws its own phrase latent."""


@torch.no_grad()
def generate_many(g: nn.Module, requests: list[Request], return_exceptions: bool = False) -> list:
    """Binary rolls for several requests from ONE generator forward (what serving batches).

    Each request draws its latents and its sampling noise from its own ``torch.Generator(seed)``,
    so its output does not depend on what else is in the batch. Returns one
    ``[n, tracks, steps, pitches]`` bool tensor per request.

    Sampling is per request. With ``return_exceptions`` a request whose sampling fails gets its
    exception in its place in the list (a :class:`SamplingError` when its own parameters are at
    fault) and the others still get their rolls; without it the first failure is raised.
    """
    g = unwrap(g)
    was_training = g.training
    g.eval()
    try:
        gens, zs, zts, labels, contexts, masks = [], [], [], [], [], []
        masked = getattr(g, "masked", False)
        shape = (g.n_tracks, g.n_bars * g.steps_per_bar)
        refused: dict[int, Exception] = {}  # requests that cannot join the forward, and why
        for i, r in enumerate(requests):
            problem = _known_problem(g, r, shape)
            if problem is not None:
                if not return_exceptions:
                    raise problem
                refused[i] = problem
                continue
            gen = torch.Generator().manual_seed(r.seed)
            z, zt = g.sample_latents(r.n, generator=gen)
            if r.track_seed is not None:
                zt = g.sample_latents(r.n, generator=torch.Generator().manual_seed(r.track_seed))[1]
            if masked:
                known = r.mask is not None
                masks.append(r.mask.bool() if known else torch.zeros(r.n, *shape, dtype=torch.bool))
                contexts.append(r.context.float() if known else torch.zeros(r.n, *shape, g.n_pitches))
            if r.phrases_per_sample > 1:  # every phrase of a sample keeps its first phrase's track latents
                k = r.phrases_per_sample
                zt = zt.view(r.n // k, k, *zt.shape[1:])[:, :1].expand(-1, k, -1, -1).reshape(zt.shape)
            gens.append(gen)
            zs.append(z)
            zts.append(zt)
            labels.append(torch.full((r.n,), 0 if r.label is None else r.label, dtype=torch.long))
        accepted = [r for i, r in enumerate(requests) if i not in refused]
        sizes = [r.n for r in accepted]
        parts, known = [], []
        if accepted:
            lab = torch.cat(labels) if g.label is not None else None
            if masked:
                context, mask = torch.cat(contexts), torch.cat(masks)
                logits = g.logits(torch.cat(zs), torch.cat(zts), lab, context, mask)
                known = list(zip(context.split(sizes), mask.split(sizes)))
            else:
                logits = g.logits(torch.cat(zs), torch.cat(zts), lab)
                known = [(None, None)] * len(accepted)
            parts = logits.split(sizes)
        decoded = None
        if accepted and g.output == "monophonic" and getattr(g, "leap_logits", None) is not None:
            # the step-by-step decode is most of a request's time: one decode for the whole batch
            decoded = _decode_many(g, accepted, gens, logits, *((context, mask) if masked else (None, None)))
        done = iter(zip(accepted, gens, parts, known, decoded or [None] * len(accepted)))
        out: list = []
        for i in range(len(requests)):
            if i in refused:
                out.append(refused[i])
                continue
            r, gen, part, (ctx, m), rolls = next(done)
            try:
                if isinstance(rolls, BaseException):
                    raise rolls
                out.append(_sample(g, r, gen, part, ctx, m) if rolls is None else _known_kept(rolls, ctx, m))
            except Exception as e:
                if not return_exceptions:
                    raise
                out.append(e)
        return out
    finally:
        g.train(was_training)


def _known_problem(g: nn.Module, r: Request, shape: tuple[int, int]) -> SamplingError | None:
    """Why a request's known notes cannot be used by ``g`` (None when they can, or it gives none)."""
    if r.mask is None:
        return None
    if not getattr(g, "masked", False):
        return SamplingError("this model is not a masked model: it cannot take known notes") if bool(r.mask.any()) else None
    if r.context is None:
        return SamplingError("a request with a mask needs its context (the known notes)")
    want = (r.n, *shape)
    if tuple(r.mask.shape) != want or tuple(r.context.shape) != (*want, g.n_pitches):
        return SamplingError(f"mask {tuple(r.mask.shape)} and context {tuple(r.context.shape)} must be {want} and "
                             f"{(*want, g.n_pitches)} for this model")
    return None


def _decode_many(g: nn.Module, requests: list[Request], gens: list[torch.Generator], logits: torch.Tensor,
                 context=None, mask=None) -> list:
    """Every request's rolls from ONE leap-prior decode of the batch's logits; per request, its
    ``[n, tracks, steps, pitches]`` one-hot roll or the :class:`SamplingError` its temperature caused.

    Each request's rows are picked as :func:`_sample` picks them alone: argmax at temperature 0, else a
    draw from its own generator, one draw per rendered step, in the same order. The leap prior adds
    exact zeros outside one entry per row (:meth:`Generator.leap_bias`), so no row depends on another:
    a request gets the same notes alone or in any batch."""
    bounds = [0]
    for r in requests:
        bounds.append(bounds[-1] + r.n)
    errors: dict[int, SamplingError] = {}

    def pick(step: torch.Tensor) -> torch.Tensor:
        idx = step.argmax(-1)
        for j, (r, gen) in enumerate(zip(requests, gens)):
            if r.temperature > 0 and j not in errors:
                rows = slice(bounds[j], bounds[j + 1])
                probs = torch.softmax(step[rows] / r.temperature, -1)
                if not torch.isfinite(probs).all():
                    errors[j] = SamplingError(f"temperature {r.temperature:g} is too low to sample at (the softened "
                                              "distribution is not finite); use 0 for the most likely notes")
                    continue
                idx[rows] = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1,
                                              generator=gen).view(probs.shape[:-1])
        return torch.nn.functional.one_hot(idx, step.shape[-1])

    rolls = g.decode(logits, pick, context, mask)[..., : g.n_pitches]
    return [errors.get(j, rolls[bounds[j]: bounds[j + 1]]) for j in range(len(requests))]


def _known_kept(roll: torch.Tensor, context=None, mask=None) -> torch.Tensor:
    """A request's rolls with a masked generator's known cells copied in."""
    if mask is not None:
        roll = torch.where(mask[..., None], context > 0, roll.bool())
    return roll.bool()


def _sample(g: nn.Module, r: Request, gen: torch.Generator, part: torch.Tensor, context=None, mask=None) -> torch.Tensor:
    """One request's rolls from its share of the logits; a masked generator's known cells copied in."""
    if g.output == "monophonic":
        def pick(logits: torch.Tensor) -> torch.Tensor:
            if r.temperature > 0:
                probs = torch.softmax(logits / r.temperature, -1)
                if not torch.isfinite(probs).all():
                    raise SamplingError(f"temperature {r.temperature:g} is too low to sample at (the softened "
                                        "distribution is not finite); use 0 for the most likely notes")
                idx = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=gen).view(probs.shape[:-1])
            else:
                idx = logits.argmax(-1)
            return torch.nn.functional.one_hot(idx, logits.shape[-1])

        # with a leap prior each step's logits depend on the step before: decoded one step at a time
        if getattr(g, "leap_logits", None) is not None:
            roll = g.decode(part, pick, context, mask)[..., : g.n_pitches]
        else:
            roll = pick(part)[..., : g.n_pitches]
    else:
        probs = torch.sigmoid(part)
        roll = (torch.rand(probs.shape, generator=gen) < probs) if r.temperature > 0 else probs > r.threshold
    return _known_kept(roll, context, mask)


def generate(g: nn.Module, n: int, seed: int, labels: torch.Tensor | None = None, temperature: float = 0.0,
             batch_size: int = 256) -> torch.Tensor:
    """Binary rolls ``[n, tracks, steps, pitches]`` from a generator (use the EMA copy).

    ``temperature`` 0 takes the most likely pitch (or threshold 0.5 for binary output); above 0
    it samples from the softened distribution. The same seed gives the same rolls. Chunks of
    ``batch_size`` phrases each get their own seed (``seed + chunk index``).
    """
    if labels is not None:
        return torch.cat([generate_many(g, [Request(1, seed + i, temperature, label=int(lab))])[0]
                          for i, lab in enumerate(labels)])
    chunks = [Request(min(batch_size, n - i), seed + i // batch_size, temperature) for i in range(0, n, batch_size)]
    return torch.cat(generate_many(g, chunks))
