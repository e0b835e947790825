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
    # the default for `make demo` on a two-core machine: the defaults in musicgan/config.py
    # (1,300 steps of batch 32 x 2 workers: about 10 minutes)
    "cpu": [],
    # MuseGAN scale, for GPU clusters
    "gpu": [
        "model.latent_dim=128", "model.track_latent_dim=32", "model.channels=512",
        "loss.critic_steps=5", "optim.lr_g=2e-4", "optim.lr_d=2e-4", "optim.ema_decay=0.999",
        "train.total_steps=20000", "train.batch_size_per_worker=128", "train.use_gpu=true",
        "train.cpus_per_worker=4", "train.precision=bf16", "train.checkpoint_every_steps=1000",
        "train.eval_every_steps=1000", "train.eval_samples=1000",
    ],
}


def load_preset(name: str, overrides: list[str] | None = None) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    cfg = apply_overrides(Config(preset=name), PRESETS[name])
    return apply_overrides(cfg, overrides or []).validate()
