"""An untrained generator saved as training saves it (no Ray): for the tests of what reads checkpoints
(the CLI, evaluation, serving), which do not care how well the model plays."""

from __future__ import annotations


def save_untrained(path, preset: str, data: dict, seed: int = 0, step: int = 6):
    """A ``preset`` GAN seeded ``seed``, its EMA copy equal to G, saved at ``path`` as step ``step``;
    returns the checkpoint's path."""
    import torch

    from musicgan import checkpoint as ckpt
    from musicgan.gan import make_gan
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    cfg = load_preset(preset)
    torch.manual_seed(seed)
    g, d = build_models(cfg.model, data["example_shape"], data["bars"], len(data["labels"]))
    gan = make_gan(g, d, cfg)
    gan.g_ema.load_state_dict(g.state_dict())
    gan.step = step
    return ckpt.save(path, gan, cfg, data)
