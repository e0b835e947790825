"""The spectrogram GAN: single-note log-mel clips conditioned on pitch and instrument (GANSynth /
SpecGAN line), in plain PyTorch. Chosen by ``model.family = "spectrogram"``.

Shapes: a clip is ``[1, n_mels, frames]`` in dB (what ``musicgan data build`` stores for audio).

- **Conditioning.** A pitch one-hot plus a learned instrument embedding. It enters G's input and,
  as a few broadcast channels, every upsampling block. Each block (and the critic's input) also
  gets a fixed *harmonic template*: a channel that marks, at that block's mel resolution, the bands
  where the asked-for pitch's first harmonics fall (1/k weight for harmonic k), the same at every
  frame. Without it G must learn from a one-hot which of 80 bands each of 36 pitches lights, and
  after 300 steps none of its notes had the right pitch; with it, it paints along given rows.
- **Generator.** latent + condition -> a ``(n_mels/16, frames/16)`` map -> four (nearest x2, 3x3
  conv, BatchNorm, LeakyReLU) blocks -> one 3x3 conv, cropped to ``frames``.
- **Units.** Both networks work in normalised units, ``(dB - mean) / std`` with the training data's
  dB mean and spread (from the manifest): training normalises real batches (:func:`normalize`),
  and :func:`generate_mels` turns G's output back into dB (:meth:`SpectrogramGenerator.to_db`). The
  gradient penalty is therefore taken in unit range: in dB it would allow a critic 20x steeper.
- **Critic.** Four stride-2 convs, then three heads: the Wasserstein
  score (with projection conditioning, Miyato & Koyama 2018) and the auxiliary classifier's pitch
  and instrument logits (AC-GAN, Odena et al. 2017; GANSynth uses the same loss). No batch norm
  (WGAN-GP penalises per-sample gradients).

The training loop in :mod:`musicgan.gan` is shared with the pianoroll GAN: a critic that returns
``(score, pitch_logits, instrument_logits)`` turns on the classifier loss there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.data.audio import DB_FLOOR
from musicgan.errors import UserError

COND_CHANNELS = 8  # broadcast conditioning channels added to every generator block
HARMONICS = 8


def harmonic_templates(pitches: list[int], n_mels: int, sample_rate_hz: int, n_fft: int) -> torch.Tensor:
    """``[max(P, 1), n_mels]``: for each pitch, weight 1/k on the mel band nearest each harmonic k.

    Band centres are librosa's (``mel_frequencies``, Slaney scale, as the features use).
    """
    import librosa

    centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmax=sample_rate_hz / 2)[1:-1]
    out = torch.zeros(max(len(pitches), 1), n_mels)
    for i, p in enumerate(pitches):
        f0 = librosa.midi_to_hz(p)
        for k in range(1, HARMONICS + 1):
            if k * f0 < sample_rate_hz / 2:
                out[i, int(abs(centres - k * f0).argmin())] += 1.0 / k
    return out


def _rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, one row at a time when not training.

    A batched GEMM computes rows that fall in a partial tile of its kernel with another summation
    order (measured: about 4e-6 dB in the output, enough to flip PCM samples), so a clip would
    depend on its batch-mates. Row by row, it never does; the convolutions after it are per image.
    The cost is a few tiny matmuls per clip. Training keeps the batched call.
    """
    if layer.training or len(x) == 1:
        return layer(x)
    return torch.cat([layer(x[i : i + 1]) for i in range(len(x))])


class SpectrogramGenerator(nn.Module):
    family = "spectrogram"

    def __init__(self, n_mels: int, frames: int, n_pitches: int, n_instruments: int, latent_dim: int = 64,
                 channels: int = 128, label_dim: int = 16, db_mean: float = -50.0, db_std: float = 25.0,
                 templates: torch.Tensor | None = None):
        super().__init__()
        self.n_mels, self.frames, self.latent_dim = n_mels, frames, latent_dim
        self.n_pitches, self.n_instruments = max(n_pitches, 1), max(n_instruments, 1)
        self.h0, self.w0 = math.ceil(n_mels / 16), math.ceil(frames / 16)
        self.instrument = nn.Embedding(self.n_instruments, label_dim)
        cond_dim = self.n_pitches + label_dim
        c = channels
        self.fc = nn.Sequential(nn.Linear(latent_dim + cond_dim, c * self.h0 * self.w0),
                                nn.BatchNorm1d(c * self.h0 * self.w0), nn.LeakyReLU(0.2))
        widths = [c, c // 2, c // 4, max(c // 8, 8), max(c // 8, 8)]
        self.cond_maps = nn.ModuleList(nn.Linear(cond_dim, COND_CHANNELS) for _ in range(4))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i] + COND_CHANNELS + 1, widths[i + 1], 3, padding=1),
                          nn.BatchNorm2d(widths[i + 1]), nn.LeakyReLU(0.2))
            for i in range(4))
        self.out = nn.Conv2d(widths[-1] + 1, 1, 3, padding=1)
        self.register_buffer("db_mean", torch.tensor(float(db_mean)))
        self.register_buffer("db_std", torch.tensor(float(db_std)))
        self.register_buffer("templates", templates if templates is not None else torch.zeros(self.n_pitches, n_mels))

    def template_map(self, pitch: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``[B, 1, height, width]``: the pitch's harmonic template at ``height`` bands (padded to 16x)."""
        t = F.pad(self.templates[pitch], (0, 16 * self.h0 - self.n_mels))
        t = F.adaptive_max_pool1d(t[:, None], height)  # [B, 1, height]
        return t[..., None].expand(-1, -1, -1, width)

    def condition(self, cond: torch.Tensor | None, n: int, device) -> torch.Tensor:
        if cond is None:
            cond = torch.zeros(n, 2, dtype=torch.long, device=device)
        return torch.cat([F.one_hot(cond[:, 0], self.n_pitches).float(), self.instrument(cond[:, 1])], 1)

    def to_db(self, y: torch.Tensor) -> torch.Tensor:
        return self.db_mean + self.db_std * y

    def forward(self, z: torch.Tensor, z_unused: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 1, n_mels, frames]`` in normalised units (:meth:`to_db` gives dB).
        ``cond`` is ``[B, 2]``: (pitch index, instrument index)."""
        b = z.shape[0]
        c = self.condition(cond, b, z.device)
        pitch = cond[:, 0] if cond is not None else torch.zeros(b, dtype=torch.long, device=z.device)
        h = _rows(self.fc, torch.cat([z, c], 1)).view(b, -1, self.h0, self.w0)
        for block, cmap in zip(self.blocks, self.cond_maps):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, _rows(cmap, c)[:, :, None, None].expand(-1, -1, *h.shape[2:]),
                                 self.template_map(pitch, *h.shape[2:])], 1))
        h = torch.cat([h, self.template_map(pitch, *h.shape[2:])], 1)
        return self.out(h)[:, :, : self.n_mels, : self.frames]

    def sample_latents(self, n: int, generator: torch.Generator | None = None, device=None):
        """``(z, empty)``: the second latent keeps the pianoroll GAN's interface (which has track latents)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return z, torch.zeros(n, 0, device=device)


class SpectrogramCritic(nn.Module):
    def __init__(self, n_mels: int, frames: int, n_pitches: int, n_instruments: int, channels: int = 128,
                 db_mean: float = -50.0, db_std: float = 25.0, templates: torch.Tensor | None = None):
        super().__init__()
        self.n_pitches, self.n_instruments = max(n_pitches, 1), max(n_instruments, 1)
        self.h, self.w = 16 * math.ceil(n_mels / 16), 16 * math.ceil(frames / 16)
        c = channels
        act = nn.LeakyReLU(0.2)
        widths = [max(c // 8, 8), max(c // 4, 8), c // 2, c, c]
        layers = [nn.Conv2d(2, widths[0], 3, padding=1), act]  # the clip, and the label's harmonic template
        for i in range(4):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1), act]
        self.body = nn.Sequential(*layers)
        feat = c * (self.h // 16) * (self.w // 16)
        self.fc = nn.Sequential(nn.Linear(feat, 2 * c), act)
        self.score = nn.Linear(2 * c, 1)
        self.pitch_head = nn.Linear(2 * c, self.n_pitches)
        self.instrument_head = nn.Linear(2 * c, self.n_instruments)
        self.embed_pitch = nn.Embedding(self.n_pitches, 2 * c)
        self.embed_instrument = nn.Embedding(self.n_instruments, 2 * c)
        self.pad_value = (DB_FLOOR - db_mean) / db_std  # pad with silence
        self.register_buffer("templates", templates if templates is not None else torch.zeros(self.n_pitches, n_mels))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        """``(score [B], pitch logits [B, P], instrument logits [B, I])`` of normalised clips."""
        pitch = cond[:, 0] if cond is not None else torch.zeros(len(x), dtype=torch.long, device=x.device)
        t = self.templates[pitch][:, None, :, None].expand(-1, -1, -1, x.shape[3])
        x = torch.cat([x, t], 1)
        x = F.pad(x, (0, self.w - x.shape[3], 0, self.h - x.shape[2]), value=self.pad_value)
        h = self.fc(self.body(x).flatten(1))
        score = self.score(h).squeeze(1)
        if cond is not None:
            score = score + ((self.embed_pitch(cond[:, 0]) + self.embed_instrument(cond[:, 1])) * h).sum(1)
        return score, self.pitch_head(h), self.instrument_head(h)


def normalize(x_db: torch.Tensor, data: dict) -> torch.Tensor:
    """dB clips -> the unit range both networks work in (see the module notes)."""
    return (x_db - data.get("db_mean", -50.0)) / max(data.get("db_std", 25.0), 1.0)


def build_spectrogram_models(model_cfg, data: dict) -> tuple[SpectrogramGenerator, SpectrogramCritic]:
    """Builder: reads the model config and the data info a checkpoint carries."""
    _, n_mels, frames = data["example_shape"]
    n_p, n_i = len(data.get("pitches") or []), len(data.get("instruments") or [])
    mean, std = data.get("db_mean", -50.0), max(data.get("db_std", 25.0), 1.0)
    fc = data["feature_config"]
    templates = harmonic_templates(data.get("pitches") or [], n_mels, fc["sample_rate_hz"], fc["n_fft"])
    g = SpectrogramGenerator(n_mels, frames, n_p, n_i, latent_dim=model_cfg.latent_dim, channels=model_cfg.channels,
                             label_dim=model_cfg.label_dim, db_mean=mean, db_std=std, templates=templates)
    d = SpectrogramCritic(n_mels, frames, n_p, n_i, channels=model_cfg.channels, db_mean=mean, db_std=std,
                          templates=templates.clone())
    return g, d


# ---------------------------------------------------------------------------------------------
# generation


@dataclass(frozen=True)
class NoteRequest:
    """One caller's share of a batched forward: ``n`` clips of one pitch and instrument, from its own seed."""

    n: int
    seed: int
    pitch: int = 0
    """Index into the model's pitch list (``data["pitches"]``), not the MIDI number."""
    instrument: int = 0
    """Index into the model's instrument list (``data["instruments"]``)."""


@torch.no_grad()
def generate_mels(g: SpectrogramGenerator, requests: list[NoteRequest]) -> list[torch.Tensor]:
    """Log-mel clips ``[n, 1, n_mels, frames]`` (dB, floored) for several requests from ONE forward.

    Each request draws its latents from ``torch.Generator(seed)``, the generator is in eval mode
    (BatchNorm uses running statistics) and its dense layers go row by row (:func:`_rows`), so a
    request's clips are bit-identical whatever else is in the batch.
    """
    was_training = g.training
    g.eval()
    zs, conds = [], []
    for r in requests:
        z, _ = g.sample_latents(r.n, generator=torch.Generator().manual_seed(r.seed))
        zs.append(z)
        conds.append(torch.tensor([[r.pitch, r.instrument]] * r.n, dtype=torch.long))
    z, cond = torch.cat(zs), torch.cat(conds)
    # oneDNN runs a convolution over ONE image by another algorithm than over several (about 4e-6 dB
    # apart): a lone clip goes through as a pair, so it matches the same clip in any batch
    single = len(z) == 1
    if single:
        z, cond = z.repeat(2, 1), cond.repeat(2, 1)
    mels = g.to_db(g(z, None, cond)).clamp_min(DB_FLOOR)[: 1 if single else None]
    g.train(was_training)
    return list(mels.split([r.n for r in requests]))


def label_grid(data: dict, n: int) -> torch.Tensor:
    """``[n, 2]`` condition indices that walk the whole pitch x instrument grid (for evaluation)."""
    import math

    n_p, n_i = max(len(data.get("pitches") or []), 1), max(len(data.get("instruments") or []), 1)
    k = torch.arange(n)
    # instruments take turns; pitches step by a stride coprime with their count, so even a few
    # clips spread over the range and n >= P x I clips cover every pair
    stride = next(s for s in (7, 5, 11, 13, 1) if math.gcd(s, n_p) == 1)
    return torch.stack([((k // n_i) * stride) % n_p, k % n_i], 1)


def generate_grid(g: SpectrogramGenerator, data: dict, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips spread over the pitch x instrument grid, and their ``[n, 2]`` condition indices."""
    cond = label_grid(data, n)
    reqs = [NoteRequest(1, seed + k, int(p), int(i)) for k, (p, i) in enumerate(cond.tolist())]
    return torch.cat(generate_mels(g, reqs)), cond


class ConditionError(UserError, ValueError):
    """A pitch or instrument the model was not trained on."""


def condition_index(data: dict, pitch: int | None, instrument: str | None) -> tuple[int, int]:
    """MIDI pitch and instrument name -> the model's ``(pitch index, instrument index)``.

    ``None`` picks the first of each (a model trained on unlabelled audio has one condition only).
    """
    pitches, instruments = data.get("pitches") or [], data.get("instruments") or []
    if pitch is None:
        p = 0
    elif pitch in pitches:
        p = pitches.index(pitch)
    else:
        have = f"{min(pitches)}..{max(pitches)}" if pitches else "none (trained without pitch labels)"
        raise ConditionError(f"pitch {pitch} is not one this model was trained on: {have}")
    if instrument is None:
        i = 0
    elif instrument in instruments:
        i = instruments.index(instrument)
    else:
        have = ", ".join(instruments) if instruments else "none (trained without instrument labels)"
        raise ConditionError(f"instrument {instrument!r} is not one this model was trained on: {have}")
    return p, i
