"""The multi-track pianoroll GAN: a MuseGAN-family generator and critic, in plain PyTorch.

Shapes: a phrase is ``[tracks, steps, pitches]`` with ``steps = bars * steps_per_bar``.

Generator (MuseGAN's hybrid model, made compact for CPUs):
- a shared latent ``z`` and one latent per track;
- a temporal network turns ``z`` into one latent per bar, so consecutive bars hang together;
- a bar generator (transposed convs over time x pitch, tracks as output channels) renders every
  bar from ``[bar latent, z, track latents, label embedding]``;
- ``monophonic`` output: per track and step a softmax over pitches plus a rest, made one-hot with a
  straight-through estimator (forward: hard; backward: the softmax's gradient), so the critic sees
  the same kind of roll as the data. ``binary`` output thresholds sigmoids the same way.
- options (each off by default, so older checkpoints' configs rebuild the model they were trained
  with; the ``cpu`` preset turns the first two on): ``voice_register``, a learned logit per voice
  and pitch; ``leap_prior``, each voice decoded one rendered step after another with a learned
  logit per leap size from the step before (:meth:`Generator.decode`), so a note depends on the
  last one instead of being chosen independently at every step; ``harmony`` (on), the chroma head;
  ``masked``, the creation assistant's inpainting generator (below).

Masked generator (``masked``): G also takes a context, the known cells of a roll and a mask over
(track, step), and returns the full roll with the known cells copied in (:meth:`Generator.forward`).
A context encoder (convolutions over time at the rendered resolution) reads the known notes and the
mask; its features steer the temporal network (one vector for the phrase), the bar generator (one
per bar), the harmony head (a pitch-class logit per step) and every voice's pitch logits per step,
and a pitch-translation-equivariant convolution over (time, pitch) lets a voice lean on the known
notes within an octave of each pitch. The leap prior decodes through the known notes, so a voice
leaving a known note is biased by it (the seam).

Critic: a pitch-time stream (tracks as channels), a chroma stream (pitch classes, which carry the
harmony), an onset stream, a contour stream (each voice's pitch and motion) and an interval stream
(the interval class between every pair of voices at every step), joined per bar and then over the
phrase; with ``register``, also a register stream (each voice's absolute pitch per step). No batch
norm (WGAN-GP penalises per-sample gradients). Labels enter by projection (Miyato & Koyama, 2018).
With ``masked`` the onset stream also sees the mask, so the critic knows which cells were given and
can judge the seams between given and generated notes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


LEAP_SCALE = 4.0


class _StraightThrough(torch.autograd.Function):
    """Forward: exactly ``hard`` (``hard + soft - soft`` would round to 0.99999994). Backward: into ``soft``."""

    @staticmethod
    def forward(ctx, hard, soft):
        return hard

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def straight_through_onehot(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hard one-hot of the argmax in the forward pass; the softmax's gradient in the backward pass."""
    soft = torch.softmax(logits / temperature, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return _StraightThrough.apply(hard, soft)


def straight_through_threshold(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    soft = torch.sigmoid(logits)
    return _StraightThrough.apply((soft > threshold).to(soft.dtype), soft)


class Generator(nn.Module):
    def __init__(self, n_tracks: int, n_bars: int, steps_per_bar: int, n_pitches: int, latent_dim: int = 64,
                 track_latent_dim: int = 16, channels: int = 128, n_labels: int = 1, label_dim: int = 16,
                 output: str = "monophonic", time_upsample: int = 1, harmony: bool = True,
                 voice_register: bool = False, leap_prior: bool = False, masked: bool = False,
                 label_register: bool = False):
        super().__init__()
        if steps_per_bar % (4 * time_upsample) or n_pitches % 12:
            raise ValueError("the generator needs steps_per_bar divisible by 4 * time_upsample and pitches by 12")
        if leap_prior and output != "monophonic":
            raise ValueError("leap_prior needs monophonic output (one pitch per track and step)")
        self.n_tracks, self.n_bars, self.steps_per_bar, self.n_pitches = n_tracks, n_bars, steps_per_bar, n_pitches
        self.time_upsample = time_upsample
        self.gen_steps = steps_per_bar // time_upsample  # steps per bar the network renders
        self.latent_dim, self.track_latent_dim, self.output = latent_dim, track_latent_dim, output
        self.n_labels = n_labels
        self.label = nn.Embedding(n_labels, label_dim) if n_labels > 1 else None
        cond = label_dim if n_labels > 1 else 0
        self.masked = masked
        n_out = n_pitches + (1 if output == "monophonic" else 0)
        ctx = max(channels // 2, 8) if masked else 0
        if masked:
            # per track and step: the known pitch (one-hot) and whether the cell is known; pooled to the
            # rendered resolution, then convolved over time (half a bar either side)
            self.context = nn.Sequential(
                nn.Conv1d(n_tracks * (n_pitches + 1), ctx, time_upsample, time_upsample), nn.LeakyReLU(0.2),
                nn.Conv1d(ctx, ctx, 5, padding=2), nn.LeakyReLU(0.2),
                nn.Conv1d(ctx, ctx, 5, padding=2), nn.LeakyReLU(0.2),
            )
            self.context_harmony = nn.Conv1d(ctx, 12, 1)            # a pitch-class logit per step
            self.context_pitch = nn.Conv1d(ctx, n_tracks * n_out, 1)  # each voice's pitch logits per step
            # (time x pitch) over the known roll and mask: "a third below the known soprano", at any pitch
            self.context_local = nn.Conv2d(2 * n_tracks, n_tracks, (3, 25), padding=(1, 12))
            # the known notes' pitch-class distribution -> a pitch-class logit at every step: the key
            # of the given bars reaches the bars written far from them
            self.context_key = nn.Linear(12, 12)
            for layer in (self.context_pitch, self.context_local, self.context_key):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        # temporal network: z (and the context's summary) -> one latent per bar
        self.temporal = nn.Sequential(
            nn.Linear(latent_dim + cond + ctx, 256), nn.LayerNorm(256), nn.ReLU(),
            nn.Linear(256, n_bars * latent_dim),
        )
        bar_in = 2 * latent_dim + n_tracks * track_latent_dim + cond + ctx
        c = channels
        self.t0, self.p0 = self.gen_steps // 4, n_pitches // 12  # first feature map: (time/4, pitch/12)
        self.fc = nn.Sequential(nn.Linear(bar_in, c * self.t0 * self.p0), nn.BatchNorm1d(c * self.t0 * self.p0),
                                nn.ReLU())

        def up(cin, cout, k, s):
            return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(
            up(c, c // 2, (2, 1), (2, 1)),           # time x2
            up(c // 2, c // 2, (2, 1), (2, 1)),      # time x2 -> gen_steps
            up(c // 2, c // 4, (1, 3), (1, 3)),      # pitch x3
        )
        self.pitch_head = nn.ConvTranspose2d(c // 4, n_tracks, (1, 4), (1, 4))  # pitch x4 -> n_pitches
        self.rest_head = nn.Conv2d(c // 4, n_tracks, (1, 3 * self.p0))           # one rest logit per step
        # harmony head: one pitch-class (chroma) logit vector per step, shared by every track and
        # every octave, so all voices lean towards the same chord
        self.harmony_head = nn.Conv2d(c // 4, 12, (1, 3 * self.p0)) if harmony else None
        # pitch class of each output pitch, relative to the lowest (the harmony head learns the offset)
        self.register_buffer("pitch_classes", torch.arange(n_pitches) % 12, persistent=False)
        # a learned logit per track and pitch (and rest): each voice's register, which the
        # translation-equivariant pitch convolutions can only reach through their input features
        self.register_bias = nn.Parameter(torch.zeros(n_tracks, n_out)) if voice_register else None
        # the same per label (a style's voices sit in their own registers: a quartet's first violin
        # above a chorale's soprano); only with several labels
        self.label_register = (nn.Parameter(torch.zeros(n_labels, n_tracks, n_out))
                               if label_register and n_labels > 1 else None)
        # a learned logit per track and leap size (0..pitches-1 semitones from the previous rendered
        # step's pitch): the notes of a voice are decoded one step after another, each choice
        # biased by the one before it (see :meth:`decode`)
        self.leap_logits = nn.Parameter(torch.zeros(n_tracks, n_pitches)) if leap_prior else None
        if leap_prior:
            p = torch.arange(n_pitches)
            self.register_buffer("leap_index", (p[:, None] - p[None, :]).abs(), persistent=False)

    def logits(self, z: torch.Tensor, z_tracks: torch.Tensor, labels: torch.Tensor | None = None,
               context: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-activation output ``[B, tracks, steps, pitches (+1 rest if monophonic)]``. A masked
        generator also takes ``context`` (the known roll ``[B, tracks, steps, pitches]``; unknown cells
        are ignored) and ``mask`` (``[B, tracks, steps]``, true where known); without them nothing is known."""
        b = z.shape[0]
        cond = [self.label(labels)] if self.label is not None else []
        ctx_steps = None
        if self.masked:
            context, mask = self._known(b, context, mask, z)
            ctx_steps = self._encode_context(context, mask)                      # [B, ctx, rendered steps]
            per_bar_ctx = ctx_steps.view(b, ctx_steps.shape[1], self.n_bars, -1).mean(3).transpose(1, 2)
            cond_phrase = cond + [ctx_steps.mean(2)]
        else:
            cond_phrase = cond
        bars = self.temporal(torch.cat([z] + cond_phrase, 1)).view(b, self.n_bars, self.latent_dim)
        per_bar = torch.cat([
            bars,
            z[:, None].expand(b, self.n_bars, self.latent_dim),
            z_tracks.reshape(b, 1, -1).expand(b, self.n_bars, -1),
        ] + [c[:, None].expand(b, self.n_bars, -1) for c in cond]
          + ([per_bar_ctx] if self.masked else []), 2).reshape(b * self.n_bars, -1)
        h = self.fc(per_bar).view(b * self.n_bars, -1, self.t0, self.p0)
        h = self.body(h)  # [B*bars, c/4, gen_steps, pitches/4]
        pitch = self.pitch_head(h)  # [B*bars, tracks, gen_steps, pitches]
        harmony = self.harmony_head(h).squeeze(3).transpose(1, 2) if self.harmony_head is not None else None
        if self.masked:  # the context's pitch-class logits join the harmony head's
            known_harmony = self._per_bar(self.context_harmony(ctx_steps), b)    # [B*bars, 12, gen_steps]
            per_pitch = context.sum((1, 2))                                       # [B, P]
            classes = torch.zeros(b, 12, dtype=per_pitch.dtype, device=per_pitch.device)
            classes = classes.index_add(1, self.pitch_classes, per_pitch)
            key = self.context_key(classes / classes.sum(1, keepdim=True).clamp_min(1.0))  # [B, 12]
            known_harmony = known_harmony + key.repeat_interleave(self.n_bars, 0)[:, :, None]
            harmony = known_harmony.transpose(1, 2) + (harmony if harmony is not None else 0)
        if harmony is not None:  # [B*bars, gen_steps, 12]
            pitch = pitch + harmony[:, None, :, self.pitch_classes]
        if self.output == "monophonic":
            rest = self.rest_head(h)  # [B*bars, tracks, gen_steps, 1]
            pitch = torch.cat([pitch, rest], 3)
        if self.masked:
            n_out = pitch.shape[3]
            voice = self._per_bar(self.context_pitch(ctx_steps), b)               # [B*bars, tracks*out, gen]
            pitch = pitch + voice.view(-1, self.n_tracks, n_out, self.gen_steps).transpose(2, 3)
            local = self.context_local(self._rendered_known(context, mask))      # [B, tracks, rendered, P]
            local = local.view(b, self.n_tracks, self.n_bars, self.gen_steps, self.n_pitches).transpose(1, 2)
            local = local.reshape(b * self.n_bars, self.n_tracks, self.gen_steps, self.n_pitches)
            pitch = pitch + F.pad(local, (0, n_out - self.n_pitches))
        if self.register_bias is not None:
            pitch = pitch + self.register_bias[:, None]
        if self.label_register is not None and labels is not None:  # [B, tracks, out] -> [B*bars, tracks, 1, out]
            pitch = pitch + self.label_register[labels].repeat_interleave(self.n_bars, 0)[:, :, None]
        if self.time_upsample > 1:  # hold each rendered step
            pitch = pitch.repeat_interleave(self.time_upsample, dim=2)
        # [B, bars, tracks, steps_per_bar, P] -> [B, tracks, bars*steps_per_bar, P]
        out = pitch.view(b, self.n_bars, self.n_tracks, self.steps_per_bar, -1).permute(0, 2, 1, 3, 4)
        return out.reshape(b, self.n_tracks, self.n_bars * self.steps_per_bar, -1)

    def _known(self, b: int, context, mask, like: torch.Tensor):
        """The context and mask, zeros (nothing known) when not given; unknown cells zeroed."""
        steps = self.n_bars * self.steps_per_bar
        if mask is None:
            mask = like.new_zeros(b, self.n_tracks, steps, dtype=torch.bool)
        if context is None:
            context = like.new_zeros(b, self.n_tracks, steps, self.n_pitches)
        return context.to(like.dtype) * mask[..., None].to(like.dtype), mask

    def _encode_context(self, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, s, p = context.shape
        cells = torch.cat([context, mask[..., None].to(context.dtype)], 3)       # [B, t, s, p+1]
        return self.context(cells.permute(0, 1, 3, 2).reshape(b, t * (p + 1), s))

    def _rendered_known(self, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 2 tracks, rendered steps, P]``: the known roll and mask, max-pooled to the rendered steps."""
        b, t, s, p = context.shape
        u = self.time_upsample
        known = context.view(b, t, s // u, u, p).amax(3)
        m = mask.to(context.dtype).view(b, t, s // u, u).amax(3)[..., None].expand(-1, -1, -1, p)
        return torch.cat([known, m], 1)

    def _per_bar(self, steps: torch.Tensor, b: int) -> torch.Tensor:
        """``[B, C, bars * gen_steps]`` -> ``[B * bars, C, gen_steps]``."""
        c = steps.shape[1]
        return steps.view(b, c, self.n_bars, self.gen_steps).transpose(1, 2).reshape(b * self.n_bars, c, -1)

    def forward(self, z, z_tracks, labels=None, context=None, mask=None, return_logits: bool = False):
        """A roll the critic can take: hard values forward, soft gradients backward. A masked
        generator returns the known cells of ``context`` exactly where ``mask`` is set. With
        ``return_logits``, ``(roll, logits)`` (the logits before the leap prior)."""
        logits = self.logits(z, z_tracks, labels, context, mask)
        if return_logits:
            return self.forward_logits(logits, context, mask), logits
        return self.forward_logits(logits, context, mask)

    def forward_logits(self, logits: torch.Tensor, context=None, mask=None) -> torch.Tensor:
        """The straight-through roll from :meth:`logits` (decoded with the leap prior when on)."""
        if self.output == "monophonic":
            if self.leap_logits is not None:
                roll = self.decode(logits, straight_through_onehot, context, mask)[..., : self.n_pitches]
            else:
                roll = straight_through_onehot(logits)[..., : self.n_pitches]
        else:
            roll = straight_through_threshold(logits)
        return self.composite(roll, context, mask)

    def composite(self, roll: torch.Tensor, context, mask) -> torch.Tensor:
        """``roll`` with the known cells of ``context`` copied in where ``mask`` is set."""
        if not self.masked or mask is None or context is None:
            return roll
        return torch.where(mask[..., None], context.to(roll.dtype), roll)

    def leap_bias(self, previous: torch.Tensor) -> torch.Tensor:
        """``[B, tracks, pitches + 1]`` logits added to a step given the step before it, one-hot
        ``previous`` (a rest before, or a rest now, adds nothing). A one-hot row times the table adds
        exact zeros to one entry, so the result does not depend on the batch."""
        # x4: Adam moves a parameter about lr a step; this lets the prior reach several logits in a cpu run
        table = LEAP_SCALE * self.leap_logits[:, self.leap_index]                # [tracks, from, to]
        table = F.pad(table, (0, 1, 0, 1))                                      # the rest row and column
        return torch.einsum("btq,tqp->btp", previous.to(table.dtype), table)

    def decode(self, logits: torch.Tensor, pick, context: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot rolls from :meth:`logits` with the leap prior, one rendered step after another:
        ``pick(step logits [B, tracks, P+1]) -> one-hot`` (straight-through in training, argmax or a
        seeded draw when sampling) sees each step's logits plus :meth:`leap_bias` of the step before.
        Where ``mask`` marks a cell known, the next step's prior starts from the known note instead
        (the rendered step's last sub-step), so generated notes lead on from given ones."""
        u = self.time_upsample
        rendered = logits[:, :, ::u]
        known = None
        if mask is not None and context is not None and self.masked:
            last = mask[:, :, u - 1 :: u]                                          # [B, t, rendered]
            notes = context[:, :, u - 1 :: u].to(logits.dtype)
            rest = (1 - notes.sum(-1, keepdim=True)).clamp_min(0)
            known = (last, torch.cat([notes, rest], -1))
        chosen, previous = [], None
        for s in range(rendered.shape[2]):
            step = rendered[:, :, s]
            if previous is not None:
                step = step + self.leap_bias(previous)
            previous = pick(step)
            chosen.append(previous)
            if known is not None:
                previous = torch.where(known[0][:, :, s, None], known[1][:, :, s], previous)
        out = torch.stack(chosen, 2)
        return out.repeat_interleave(u, dim=2) if u > 1 else out

    def sample_latents(self, n: int, generator: torch.Generator | None = None, device=None):
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        zt = torch.randn(n, self.n_tracks, self.track_latent_dim, generator=generator, device=device)
        return z, zt


class Critic(nn.Module):
    def __init__(self, n_tracks: int, n_bars: int, steps_per_bar: int, n_pitches: int, channels: int = 128,
                 n_labels: int = 1, register: bool = False, masked: bool = False, classifier: bool = False):
        super().__init__()
        c = max(channels // 2, 8)
        self.masked = masked
        self.n_bars, self.steps_per_bar, self.n_pitches = n_bars, steps_per_bar, n_pitches
        act = nn.LeakyReLU(0.2)
        beat = steps_per_bar // 4
        # pitch-time stream: collapse pitch (octave-sized kernels), then time down to bars
        self.pitch_time = nn.Sequential(
            nn.Conv2d(n_tracks, c, (1, 12), (1, 12)), act,              # [c, steps, P/12]
            nn.Conv2d(c, c, (1, n_pitches // 12)), act,                  # [c, steps, 1]
            nn.Conv2d(c, 2 * c, (beat, 1), (beat, 1)), act,             # [2c, beats, 1]
            nn.Conv2d(2 * c, 2 * c, (4, 1), (4, 1)), act,               # [2c, bars, 1]
        )
        # chroma stream: pitch classes per step, summed over octaves
        self.chroma = nn.Sequential(
            nn.Conv1d(n_tracks * 12, c, beat, beat), act,               # [c, beats]
            nn.Conv1d(c, c, 4, 4), act,                                  # [c, bars]
        )
        # onset stream: where notes start, per track (and, when masked, which cells were given)
        self.onset = nn.Sequential(
            nn.Conv1d(n_tracks * (2 if masked else 1), c // 2, beat, beat), act,
            nn.Conv1d(c // 2, c // 2, 4, 4), act,
        )
        # contour stream: each track's (mean) pitch per step and its step-to-step motion, so leaps
        # and wandering voices are one small conv away
        self.contour = nn.Sequential(
            nn.Conv1d(3 * n_tracks, c // 2, beat, beat), act,
            nn.Conv1d(c // 2, c // 2, 4, 4), act,
        )
        self.register_buffer("pitch_axis", torch.linspace(0, 1, n_pitches), persistent=False)
        # interval stream: for every pair of tracks, which interval class (0..11 semitones mod 12)
        # separates them at each step: the vertical harmony, as features a conv can weigh directly
        self.pairs = [(i, j) for i in range(n_tracks) for j in range(i + 1, n_tracks)]
        self.intervals = nn.Sequential(
            nn.Conv1d(max(len(self.pairs), 1) * 12, c, beat, beat), act,
            nn.Conv1d(c, c, 4, 4), act,
        ) if self.pairs else None
        shift = torch.zeros(12, 12, 12)  # shift[k, a, b] = 1 where b == (a + k) mod 12
        for k in range(12):
            for a in range(12):
                shift[k, a, (a + k) % 12] = 1
        self.register_buffer("shift", shift, persistent=False)
        # register stream: every voice's absolute pitch at every step (tracks x pitches as channels),
        # so a voice an octave out of its range is one beat-long kernel away
        self.register = nn.Sequential(
            nn.Conv1d(n_tracks * n_pitches, c, beat, beat), act,
            nn.Conv1d(c, c, 4, 4), act,
        ) if register else None
        joined = 2 * c + c + c // 2 + c // 2 + (c if self.pairs else 0) + (c if register else 0)
        self.phrase = nn.Sequential(nn.Conv1d(joined, 2 * c, 1), act, nn.Conv1d(2 * c, 2 * c, n_bars), act)
        self.out = nn.Linear(2 * c, 1)
        self.embed = nn.Embedding(n_labels, 2 * c) if n_labels > 1 else None
        # AC-GAN: a head that names the label (the style) of a phrase; G is trained to be named as asked
        self.classify = nn.Linear(2 * c, n_labels) if classifier and n_labels > 1 else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, steps, p = x.shape
        h1 = self.pitch_time(x).squeeze(3)                                      # [B, 2c, bars]
        chroma = x.view(b, t, steps, p // 12, 12).sum(3)                        # [B, t, steps, 12]
        h2 = self.chroma(chroma.permute(0, 1, 3, 2).reshape(b, t * 12, steps))  # [B, c, bars]
        sounding = x.amax(3)                                                     # [B, t, steps]
        # a step starts a note when its pitch differs from the previous step's
        change = (x[:, :, 1:] - x[:, :, :-1]).abs().amax(3)
        onsets = torch.cat([sounding[:, :, :1], change], 2)
        if self.masked:
            given = mask.to(x.dtype) if mask is not None else torch.zeros_like(onsets)
            onsets = torch.cat([onsets, given], 1)
        h3 = self.onset(onsets)
        level = (x * self.pitch_axis).sum(3) / x.sum(3).clamp_min(1.0)          # [B, t, steps], 0..1
        motion = torch.cat([torch.zeros_like(level[:, :, :1]), level[:, :, 1:] - level[:, :, :-1]], 2)
        h4 = self.contour(torch.cat([level, motion, sounding], 1))
        streams = [h1, h2, h3, h4]
        if self.intervals is not None:
            i, j = zip(*self.pairs)
            ci, cj = chroma[:, list(i)], chroma[:, list(j)]                     # [B, pairs, steps, 12]
            # amount of pitch class a in track i times pitch class a+k in track j, summed over a
            iv = torch.einsum("npsa,kac,npsc->npks", ci, self.shift, cj)        # [B, pairs, 12, steps]
            streams.append(self.intervals(iv.reshape(b, -1, steps)))
        if self.register is not None:
            streams.append(self.register(x.permute(0, 1, 3, 2).reshape(b, t * p, steps)))
        h = self.phrase(torch.cat(streams, 1)).squeeze(2)                        # [B, 2c]
        score = self.out(h).squeeze(1)
        if self.embed is not None and labels is not None:
            score = score + (self.embed(labels) * h).sum(1)
        if self.classify is not None:
            return score, self.classify(h)
        return score


def build_models(model_cfg, example_shape: list[int], bars: int, n_labels: int) -> tuple[Generator, Critic]:
    """Builder: the only place that reads the model config."""
    n_tracks, steps, n_pitches = example_shape
    steps_per_bar = steps // bars
    g = Generator(n_tracks, bars, steps_per_bar, n_pitches, latent_dim=model_cfg.latent_dim,
                  track_latent_dim=model_cfg.track_latent_dim, channels=model_cfg.channels, n_labels=n_labels,
                  label_dim=model_cfg.label_dim, output=model_cfg.output, time_upsample=model_cfg.time_upsample,
                  harmony=model_cfg.harmony_head, voice_register=model_cfg.voice_register,
                  leap_prior=model_cfg.leap_prior, masked=model_cfg.masked,
                  label_register=model_cfg.label_register)
    d = Critic(n_tracks, bars, steps_per_bar, n_pitches, channels=model_cfg.channels, n_labels=n_labels,
               register=model_cfg.critic_register, masked=model_cfg.masked,
               classifier=model_cfg.critic_classifier)
    return g, d


def build_for_data(model_cfg, data: dict):
    """The generator and critic for ``model_cfg.family``, shaped by a checkpoint's data info."""
    from musicgan.families import get_family

    return get_family(model_cfg.family).build(model_cfg, data)
