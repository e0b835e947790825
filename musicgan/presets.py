"""Presets list only what they change from the defaults in :mod:`musicgan.config`."""

from __future__ import annotations

from musicgan.config import Config, ConfigError, apply_overrides

PRESETS: dict[str, list[str]] = {
    # trains in seconds; for tests
    "cpu-tiny": [
        "model.latent_dim=16", "model.track_latent_dim=4", "model.channels=16",
        "train.total_steps=6", "train.batch_size_per_worker=16", "optim.lr_final_frac=1.0", "train.checkpoint_every_steps=3",
        "train.eval_every_steps=3", "train.eval_samples=32", "train.shuffle_buffer_rows=64",
    ],
    # the default for `make demo` on a two-core machine (1,300 steps of batch 32 x 2 workers). Issue 12's
    # voice measures, plain-loop proxy runs of batch 64 (quality objective; lower is better):
    # - config defaults, 3 seeds x 1,300 steps: median 20.2 (octave leaps 126x Bach's, crossing 5.7x);
    # - + register, leap prior, critic register, voice statistics: 5.3 (parallels 8.6x, C2ST 0.98);
    # - + parallels gap 0.5, vertical intervals 3, EMA 0.995 (one seed, step 1,000): 3.0, parallels
    #   1.9x, vertical intervals 0.084; misses TD (1.18x), range (0.81x), octave leaps (3.3x), C2ST 0.98;
    # - + one critic step per G step at twice the critic's learning rate (2 seeds x 1,300 steps): 2.5
    #   and 3.2, and a step costs about 35% less (the critic's gradient penalty is most of a step).
    # benchmarks/musical_quality.py measures this preset as `make demo` trains it (README, issue 12).
    "cpu": (CPU := ["model.voice_register=true", "model.leap_prior=true", "model.critic_register=true",
                    "loss.voice_stats_weight=1", "loss.parallels_weight=0.5", "loss.vertical_weight=3",
                    "optim.ema_decay=0.995", "loss.critic_steps=1", "optim.lr_d=2e-3"]),
    # the cpu preset trained twice as long (about 30 minutes on two cores)
    "cpu-long": CPU + ["train.total_steps=2600"],
    # --- the creation assistant: the masked generator (harmonize, continue, fill in, long pieces) ---
    # trains in seconds; for tests
    "cpu-masked-tiny": ["model.masked=true", "model.voice_register=true", "model.leap_prior=true",
                        "model.critic_register=true", "model.latent_dim=16", "model.track_latent_dim=4",
                        "model.channels=16", "train.total_steps=6", "train.batch_size_per_worker=16",
                        "optim.lr_final_frac=1.0", "train.checkpoint_every_steps=3", "train.eval_every_steps=3",
                        "train.eval_samples=32", "train.shuffle_buffer_rows=64"],
    # the cpu preset's model and losses, masked, plus the reconstruction term; 900 steps (the
    # 15-minute budget on two workers: a masked step costs about a tenth more than an unmasked one)
    "cpu-masked": (MASKED := CPU + ["model.masked=true", "loss.recon_weight=1", "train.total_steps=900"]),
    # the same for the 30-minute budget
    "cpu-masked-long": MASKED + ["train.total_steps=1800"],
    # --- one model over the embedded styles (`data build --source styles`), conditioned on the style ---
    # the cpu preset plus a register per style and voice and an AC-GAN head in the critic that names
    # the style. Plain-loop proxy runs on the styles build (batch 64, one seed, issue 16): at 1,000
    # steps the per-style register took style accuracy from 0.39 to 0.56 of the classifier's ceiling
    # (GPU proxy); at 500 steps the critic's head took it from 0.47 to 0.53 (CPU proxy); sampling
    # the styles uniformly instead of as the data holds them did not help (0.34-0.41). 1,900 steps:
    # the 30-minute budget on two workers (the styles' 60 pitches cost more than the chorales' 48).
    "cpu-styles": CPU + ["model.label_register=true", "model.critic_classifier=true", "train.total_steps=1900"],
    # MuseGAN scale, for GPU clusters
    "gpu": [
        "model.latent_dim=128", "model.track_latent_dim=32", "model.channels=512",
        "loss.critic_steps=5", "optim.lr_g=2e-4", "optim.lr_d=2e-4", "optim.ema_decay=0.999",
        "train.total_steps=20000", "train.batch_size_per_worker=128", "train.use_gpu=true",
        "train.cpus_per_worker=4", "train.precision=bf16", "train.checkpoint_every_steps=1000",
        "train.eval_every_steps=1000", "train.eval_samples=1000",
    ],
    # --- audio: the pitch- and instrument-conditioned spectrogram GAN (model.family spectrogram) ---
    # trains in seconds; for tests
    "audio-tiny": [
        "model.family=spectrogram", "model.latent_dim=16", "model.channels=16", "model.label_dim=8",
        "optim.lr_g=3e-4", "optim.lr_d=3e-4", "optim.ema_decay=0.9", "optim.lr_final_frac=1.0",
        "train.total_steps=6", "train.batch_size_per_worker=16", "train.checkpoint_every_steps=3",
        "train.eval_every_steps=3", "train.eval_samples=16", "train.shuffle_buffer_rows=64", "train.cache_data=true",
    ],
    # `musicgan train --preset audio-cpu` on the `notes` build: about 8 minutes on two cores. 900 steps,
    # not 600: at 600 the pitch accuracy of 3 seeds was 0.88-0.93 of the training clips' own on the
    # additive-synth data (median 0.899, under the 0.9 target), and still rising (in-run eval, seed 0:
    # 0.83 at 300, 0.86 at 450, 0.92 at 600, 0.94 at 900); 900 steps gave that worst seed 0.958. A
    # heavier aux-classifier loss (loss.aux_weight=3) did not help (0.844 at 600, seed 0). A short run
    # needs a short EMA: at 0.998, 300 steps still leave half the initial weights in the sampled copy.
    "audio-cpu": [
        "model.family=spectrogram", "model.channels=64",
        "optim.lr_g=3e-4", "optim.lr_d=3e-4", "optim.ema_decay=0.99",
        "train.total_steps=900", "train.batch_size_per_worker=32", "train.checkpoint_every_steps=100",
        "train.eval_every_steps=100", "train.eval_samples=128", "train.cache_data=true",
        "train.threads_per_worker=2",  # one worker on two cores: give it both for the convolutions
    ],
    # GANSynth scale, for GPU clusters
    "audio-gpu": [
        "model.family=spectrogram", "model.latent_dim=128", "model.channels=256",
        "optim.lr_g=2e-4", "optim.lr_d=2e-4", "optim.ema_decay=0.999", "loss.critic_steps=3",
        "train.total_steps=20000", "train.batch_size_per_worker=64", "train.use_gpu=true",
        "train.cpus_per_worker=4", "train.precision=bf16", "train.checkpoint_every_steps=1000",
        "train.eval_every_steps=1000", "train.eval_samples=512", "train.cache_data=true",
    ],
}


def load_preset(name: str, overrides: list[str] | None = None) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    cfg = apply_overrides(Config(preset=name), PRESETS[name])
    return apply_overrides(cfg, overrides or []).validate()
