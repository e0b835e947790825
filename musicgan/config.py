"""One typed config tree for the whole system.

It flows CLI -> Ray Train -> Tune -> Serve. It crosses Ray boundaries as a plain dict
(:func:`to_dict`) and is rebuilt on the other side (:func:`from_dict`). Every field says what
it means where it is defined; presets in :mod:`musicgan.presets` list only what they change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field

from musicgan.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value or override that cannot be applied."""


FEATURE_KINDS = ("pianoroll", "mel")  # what musicgan.data.build makes: from MIDI, from audio
TRACK_MODES = ("index", "merge", "program")
BAND_TRACKS = ("drums", "piano", "guitar", "bass", "strings")
"""The tracks of ``track_mode="program"``, in MuseGAN's LPD-5 order; the General MIDI program families
behind each are in :mod:`musicgan.data.pianoroll`."""


@dataclass
class FeatureConfig:
    """How music becomes the tensors in the shards. Its hash names a data build."""

    kind: str = "pianoroll"
    """``pianoroll`` (MIDI sources) or ``mel`` (audio sources)."""
    bars: int = 4
    """Bars per phrase (one training example)."""
    steps_per_bar: int = 16
    """Time steps per 4/4 bar; 16 is a sixteenth-note grid. Other meters keep the step length."""
    pitch_low: int = 36
    """Lowest MIDI pitch kept (inclusive). 36 = C2."""
    pitch_high: int = 84
    """Highest MIDI pitch kept (exclusive). 84 = C6; Bach's four voices fit in 36..83."""
    hop_bars: int = 1
    """Bars between the starts of consecutive phrases."""
    transpose: list[int] = field(default_factory=lambda: [0])
    """Semitone shifts applied as augmentation; each kept phrase appears once per shift."""
    track_names: list[str] = field(default_factory=lambda: ["soprano", "alto", "tenor", "bass"])
    """Output tracks (the channels of the pianoroll)."""
    track_mode: str = "index"
    """``index``: the i-th non-drum track with notes -> track i. ``merge``: every non-drum note -> one track.
    ``program``: every instrument by its General MIDI program family, drums included, into the band
    tracks named (a subset of :data:`BAND_TRACKS`, any order; see :mod:`musicgan.data.pianoroll`).
    Piano and guitar keep chords there: train such data with ``model.output=binary``."""
    min_active_fraction: float = 0.5
    """A phrase is kept only if at least this fraction of its steps sound."""
    val_fraction: float = 0.1
    """Share of source files held out (split ``val``) for metrics; decided by a hash of the file name."""
    max_steps_per_file: int = 100_000
    """Longer files are skipped with a reason instead of allocating a huge roll."""
    max_file_bytes: int = 64 * 1024 * 1024
    """Larger files are skipped with a reason."""
    # --- audio (kind == "mel") ---
    sample_rate_hz: int = 16_000
    """Audio is resampled to this rate before the mel transform."""
    n_fft: int = 1024
    """FFT window length in samples."""
    hop_length: int = 256
    """Samples between mel frames."""
    n_mels: int = 64
    """Mel bands."""
    clip_seconds: float = 2.0
    """Length of one audio example; files are cut into clips of this length."""

    @property
    def n_tracks(self) -> int:
        return len(self.track_names)

    @property
    def n_pitches(self) -> int:
        return self.pitch_high - self.pitch_low

    @property
    def steps_per_phrase(self) -> int:
        return self.bars * self.steps_per_bar

    @property
    def frames_per_clip(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate_hz)) // self.hop_length + 1

    def example_shape(self) -> list[int]:
        if self.kind == "mel":
            return [1, self.n_mels, self.frames_per_clip]
        return [self.n_tracks, self.steps_per_phrase, self.n_pitches]

    def validate(self) -> "FeatureConfig":
        if self.kind not in FEATURE_KINDS:
            raise ConfigError(f"features.kind must be 'pianoroll' or 'mel', not {self.kind!r}")
        if self.bars < 1 or self.hop_bars < 1:
            raise ConfigError("bars and hop_bars must be at least 1")
        if self.steps_per_bar < 1 or self.steps_per_bar % 4:
            raise ConfigError(f"steps_per_bar must be a positive multiple of 4, not {self.steps_per_bar}")
        if not (0 <= self.pitch_low < self.pitch_high <= 128):
            raise ConfigError(f"pitch range {self.pitch_low}:{self.pitch_high} must satisfy 0 <= low < high <= 128")
        if not self.track_names:
            raise ConfigError("track_names must name at least one track")
        if self.track_mode not in TRACK_MODES:
            raise ConfigError(f"track_mode must be 'index', 'merge' or 'program', not {self.track_mode!r}")
        if self.track_mode == "merge" and self.n_tracks != 1:
            raise ConfigError("track_mode 'merge' makes exactly one track; give one track name")
        if self.track_mode == "program":
            unknown = [t for t in self.track_names if t not in BAND_TRACKS]
            if unknown or len(set(self.track_names)) != self.n_tracks:
                raise ConfigError(f"track_mode 'program' makes band tracks: name each at most once, from "
                                  f"{','.join(BAND_TRACKS)} (got {','.join(self.track_names)})")
        if any(abs(t) > 24 for t in self.transpose):
            raise ConfigError("transpositions beyond two octaves are not supported")
        return self

    def hash(self) -> str:
        """Stable short hash of the fields that change the tensors."""
        return config_hash(to_dict(self))


def config_hash(d: dict) -> str:
    blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, and ``--set key=value`` overrides


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def from_dict(cls, d: dict | None):
    """Rebuild a (nested) dataclass from a plain dict; unknown keys are an error."""
    d = dict(d or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown key(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value = d[f.name]
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ) and isinstance(value, dict):
            value = from_dict(typ, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _coerce(value: str, current):
    """Parse an override string into the type of the value it replaces."""
    if isinstance(current, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected true/false, got {value!r}")
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, list):
        if value.strip() == "":
            return []
        items = [v.strip() for v in value.split(",")]
        if current and isinstance(current[0], int):
            return [int(v) for v in items]
        if current and isinstance(current[0], float):
            return [float(v) for v in items]
        return items
    if current is None:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def get_path(cfg, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"unknown config key {dotted!r}")
        obj = getattr(obj, part)
    return obj


def set_path(cfg, dotted: str, value) -> None:
    parts = dotted.split(".")
    parent = get_path(cfg, ".".join(parts[:-1])) if len(parts) > 1 else cfg
    get_path(cfg, dotted)  # raises on unknown keys
    setattr(parent, parts[-1], value)


def apply_overrides(cfg, overrides: list[str]):
    """Apply ``key.sub=value`` strings in place; a bad key or value is a :class:`ConfigError`."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        current = get_path(cfg, key.strip())
        try:
            set_path(cfg, key.strip(), _coerce(raw.strip(), current))
        except ValueError as e:
            raise ConfigError(f"bad value for {key}: {e}") from None
    return cfg


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class ModelConfig:
    """The GAN's architecture. Models take explicit arguments; only builders read this."""

    family: str = "pianoroll"
    """``pianoroll`` (multi-track MuseGAN-style GAN, for ``pianoroll`` data) or ``spectrogram``
    (pitch- and instrument-conditioned log-mel GAN with an auxiliary classifier, for ``mel`` data;
    see :mod:`musicgan.audio_model`)."""
    output: str = "monophonic"
    """``monophonic``: each track plays one pitch or rests at each step (softmax, straight-through
    one-hot): right for voices and melodies. ``binary``: any set of pitches (sigmoid, straight-through
    threshold), for piano-like tracks."""
    latent_dim: int = 64
    """Size of the shared latent (and of the per-bar latents the temporal network makes from it)."""
    track_latent_dim: int = 16
    """Size of each track's own latent."""
    channels: int = 128
    """Width of the generator's first feature map; the critic's widths scale with it."""
    label_dim: int = 16
    """Size of the label embedding when the data has more than one label (conditioning)."""
    time_upsample: int = 2
    """The generator renders ``steps_per_bar / time_upsample`` steps per bar and holds each for
    ``time_upsample`` steps. 2 = an eighth-note resolution on the 16-step grid: every generated note
    lasts at least an eighth (Bach's chorales have under 3% shorter notes), and G does half the work."""
    harmony_head: bool = True
    """G adds one pitch-class logit per step, shared by every track and octave (all voices lean
    towards one chord). Octave-blind: it favours a pitch class in every register alike."""
    voice_register: bool = False
    """G adds a learned logit per track and pitch: each voice's register (False in checkpoints
    from before it existed)."""
    label_register: bool = False
    """With several labels (styles), G adds a learned logit per label, track and pitch on top of
    ``voice_register``: each style's voices keep their own registers (False in checkpoints from
    before it existed)."""
    leap_prior: bool = False
    """G decodes each voice one rendered step after another, adding a learned logit per leap size
    (semitones from the step before) to each step: a voice's next note depends on its last
    (monophonic output only; False in checkpoints from before it existed)."""
    critic_register: bool = False
    """The critic gets a register stream: each voice's absolute pitch per step, not only its
    pitch class, contour and intervals (False in checkpoints from before it existed)."""
    critic_classifier: bool = False
    """With several labels (styles), the critic also names each phrase's label (AC-GAN, weighted by
    ``loss.aux_weight``): it learns from real phrases, and G is trained to be named as asked, on top
    of the projection conditioning (False in checkpoints from before it existed)."""
    masked: bool = False
    """The creation assistant's generator: G also takes the known cells of a roll and a mask over
    (track, step), and returns the full roll with the known cells copied in; it harmonizes,
    continues, fills in and (with nothing known) generates. Training draws a mask per example from
    the ``mask`` mixture; the critic sees the mask too (False in checkpoints from before it existed)."""


@dataclass
class MaskConfig:
    """The mixture of masks a masked generator trains on: one kind drawn per example, with these
    relative weights (they need not sum to 1). Used only with ``model.masked``."""

    none: float = 0.2
    """Nothing known: unconditional generation (today's job)."""
    voice: float = 0.35
    """One voice known, the rest generated (harmonization)."""
    bass_share: float = 0.25
    """Of the one-voice masks, the share that gives the bass; the others give the soprano."""
    voices: float = 0.1
    """Two or three voices known (accompaniment)."""
    prompt: float = 0.2
    """The first 1 to ``bars - 1`` bars known (continuation)."""
    region: float = 0.15
    """A random rectangle of bars x voices unknown, everything else known (inpainting)."""

    def weights(self) -> dict[str, float]:
        return {"none": self.none, "voice": self.voice, "voices": self.voices, "prompt": self.prompt,
                "region": self.region}


@dataclass
class LossConfig:
    kind: str = "wgan-gp"
    """``wgan-gp`` (Wasserstein with gradient penalty) or ``hinge``."""
    critic_steps: int = 2
    """Critic (discriminator) updates per generator update."""
    gp_weight: float = 10.0
    """Gradient-penalty weight (wgan-gp only)."""
    voice_stats_weight: float = 0.0
    """Weight of a feature-matching term in G's loss (Salimans et al., 2016): the L1 distance
    between the real and the generated batch's voice statistics (each voice's pitch histogram, its
    step-to-step intervals, and adjacent voices' signed distances). 0 = off."""
    parallels_weight: float = 0.0
    """Weight of a term in G's loss: the gap, per 100 voice-pair transitions, between the generated
    and the real batch's rates of parallel fifths and octaves (mean over voice pairs). 0 = off."""
    vertical_weight: float = 0.0
    """Weight of a term in G's loss: the total-variation distance between the generated and the real
    batch's vertical interval classes (per voice pair, at quarter-note beats; the measure
    ``vertical_distance`` of :mod:`musicgan.metrics`). 0 = off."""
    recon_weight: float = 0.0
    """Masked generators: weight of a term in G's loss, the cross-entropy of G's note logits against
    the real notes in the cells it was asked to write (examples with at least one known cell only,
    so unconditional generation keeps only the adversarial and statistics terms). It ties the
    written voices to the given ones, as pix2pix's L1 term does; more weight, less variety. 0 = off."""
    aux_weight: float = 1.0
    """Weight of the auxiliary classifier's cross-entropy (AC-GAN; the spectrogram family, and
    ``model.critic_classifier``): the critic learns to name the labels of real examples (pitch and
    instrument; style), and G is pushed to make examples it names right."""


@dataclass
class OptimConfig:
    lr_g: float = 1e-3
    """Generator learning rate (Adam)."""
    lr_d: float = 1e-3
    """Critic learning rate (Adam)."""
    beta1: float = 0.5
    beta2: float = 0.9
    ema_decay: float = 0.998
    """Decay of the EMA copy of G that is sampled and served."""
    lr_final_frac: float = 0.1
    """Both learning rates decay linearly to this fraction of their start by the last step; GAN
    metrics swing from evaluation to evaluation at a constant rate, and the decay lets them settle."""


@dataclass
class TrainConfig:
    total_steps: int = 1300
    """Generator steps to train for."""
    batch_size_per_worker: int = 32
    """Real phrases per worker per critic step."""
    num_workers: int = 1
    """Ray Train workers (data-parallel, DDP)."""
    use_gpu: bool = False
    cpus_per_worker: float = 0.5
    """CPU request per Train worker; below 1 so Ray Data's read tasks still get a core on small machines."""
    precision: str = "fp32"
    """``fp32`` or ``bf16`` (autocast; for GPU presets)."""
    checkpoint_every_steps: int = 200
    """Report a checkpoint every this many generator steps."""
    eval_every_steps: int = 200
    """Compute metrics, write TensorBoard/CSV and sample files every this many steps."""
    eval_samples: int = 256
    """Generated phrases per evaluation."""
    max_failures: int = 2
    """Worker-group restarts allowed (Ray Train FailureConfig)."""
    seed: int = 0
    shuffle_buffer_rows: int = 1024
    """Ray Data local shuffle buffer, in rows."""
    threads_per_worker: int = 0
    """torch intra-op threads per worker; 0 = cpus_per_worker rounded up."""
    cache_data: bool | str = "auto"
    """``auto``, ``true`` or ``false``. ``true``: read the training shards once into Ray's object
    store and feed every epoch from there; ``false``: stream them from the shards every epoch (the
    mode for builds that do not fit); ``auto``: cache when the decoded train split is small
    (:func:`musicgan.train.data_mode` says how small). Caching matters for small sets: re-planning the
    Parquet read each epoch cost the 432-clip ``notes`` build 2.2 s a step against 0.45 s, and on two
    cores streaming's read and decode share the training cores (benchmarks/ingest_feed.py)."""


@dataclass
class Config:
    """The whole run: what the CLI resolves, Ray Train receives, and checkpoints carry."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    preset: str = "cpu"
    """The preset this config started from (informational)."""

    def validate(self) -> "Config":
        from musicgan.families import FAMILIES, get_family

        family = get_family(self.model.family)
        with_voices = " or ".join(f.name for f in FAMILIES.values() if f.voice_measures)
        if self.model.output not in ("monophonic", "binary"):
            raise ConfigError(f"model.output must be 'monophonic' or 'binary', not {self.model.output!r}")
        if self.loss.kind not in ("wgan-gp", "hinge"):
            raise ConfigError(f"loss.kind must be 'wgan-gp' or 'hinge', not {self.loss.kind!r}")
        if self.loss.critic_steps < 1:
            raise ConfigError("loss.critic_steps must be at least 1")
        if self.model.leap_prior and (not family.voice_measures or self.model.output != "monophonic"):
            raise ConfigError(f"model.leap_prior needs the {with_voices} family with monophonic output (one pitch "
                              "per voice and step)")
        if self.loss.recon_weight < 0:
            raise ConfigError(f"loss.recon_weight must be at least 0, not {self.loss.recon_weight}")
        if self.loss.recon_weight > 0 and not self.model.masked:
            raise ConfigError("loss.recon_weight needs model.masked=true (it scores the cells G fills in)")
        for name in ("voice_stats_weight", "parallels_weight", "vertical_weight"):
            weight = getattr(self.loss, name)
            if weight < 0:
                raise ConfigError(f"loss.{name} must be at least 0, not {weight}")
            if weight > 0 and not family.voice_measures:
                raise ConfigError(f"loss.{name} compares voices: it needs the {with_voices} family")
        weights = self.mask.weights()
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError(f"mask weights must be at least 0 and not all 0: {weights}")
        if not 0 <= self.mask.bass_share <= 1:
            raise ConfigError(f"mask.bass_share must be within 0..1, not {self.mask.bass_share}")
        if self.model.masked and not family.voice_measures:
            raise ConfigError(f"model.masked needs the {with_voices} family (masks are over voices and steps)")
        if self.train.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'fp32' or 'bf16', not {self.train.precision!r}")
        for name in ("total_steps", "batch_size_per_worker", "num_workers", "checkpoint_every_steps",
                     "eval_every_steps"):
            if getattr(self.train, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1")
        self.train.cache_data = cache_data_setting(self.train.cache_data)
        return self


def cache_data_setting(value) -> bool | str:
    """``train.cache_data`` as ``"auto"``, True or False. An override arrives as a string (the
    field's default is the string ``auto``), a saved config as a bool; both are accepted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return "auto"
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
    raise ConfigError(f"train.cache_data must be auto, true or false, not {value!r}")
