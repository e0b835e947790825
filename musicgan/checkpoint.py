"""Checkpoints: a directory of state_dicts plus the config, loadable with ``weights_only=True``.

::

    checkpoint_000200/
      generator.pt  critic.pt  generator_ema.pt  optim_g.pt  optim_d.pt   state_dicts
      state.pt       {"step": int, "torch_rng": ByteTensor} (rank 0's RNG)
      config.json    {"config": <Config as dict>, "data": {feature_config, feature_hash,
                      example_shape, labels, bars, steps_per_bar, pitch_low, track_names}}

It is written into a temporary sibling directory and renamed into place, so a crash while saving
leaves the previous checkpoint as it was and never a half-written one under the real name.
Serving and sampling rebuild the architecture from ``config.json`` alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import torch

from musicgan.config import Config, from_dict, to_dict
from musicgan.gan import GAN, unwrap

FILES = ("generator.pt", "critic.pt", "generator_ema.pt", "optim_g.pt", "optim_d.pt", "state.pt", "config.json")


class CheckpointError(Exception):
    """A checkpoint that is missing, incomplete or of another data/feature set."""


def data_info(manifest: dict) -> dict:
    """What a checkpoint needs to know about its data to rebuild the model and decode its output."""
    fc = manifest["feature_config"]
    info = {
        "kind": manifest["kind"],
        "feature_config": fc, "feature_hash": manifest["feature_hash"], "example_shape": manifest["example_shape"],
        "labels": manifest["labels"], "bars": fc["bars"], "steps_per_bar": fc["steps_per_bar"],
        "pitch_low": fc["pitch_low"], "track_names": fc["track_names"],
    }
    if manifest["kind"] == "mel":  # the spectrogram GAN's conditions and the dB scale it works in
        stats = manifest.get("track_stats", {})
        info.update(pitches=manifest.get("pitches", []), instruments=manifest.get("instruments", []),
                    db_mean=stats.get("mean_db", -50.0), db_std=stats.get("std_db", 25.0))
    return info


def save(path: str | Path, gan: GAN, cfg: Config, data: dict, extra: dict | None = None) -> Path:
    """Write a checkpoint directory atomically; returns its path."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        torch.save(unwrap(gan.g).state_dict(), tmp / "generator.pt")
        torch.save(unwrap(gan.d).state_dict(), tmp / "critic.pt")
        torch.save(gan.g_ema.state_dict(), tmp / "generator_ema.pt")
        torch.save(gan.opt_g.state_dict(), tmp / "optim_g.pt")
        torch.save(gan.opt_d.state_dict(), tmp / "optim_d.pt")
        torch.save({"step": gan.step, "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
        meta = {"config": to_dict(cfg), "data": data, "step": gan.step, **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        if final.exists():  # replace: move the old one aside first, then drop it
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise CheckpointError(f"{path} is not a complete musicgan checkpoint (missing {', '.join(missing)})")
    return json.loads((path / "config.json").read_text())


def load_state(path: str | Path, name: str):
    return torch.load(Path(path) / name, map_location="cpu", weights_only=True)


def restore(path: str | Path, gan: GAN) -> None:
    """Load every state_dict and the step into an already-built :class:`GAN`."""
    read_meta(path)
    unwrap(gan.g).load_state_dict(load_state(path, "generator.pt"))
    unwrap(gan.d).load_state_dict(load_state(path, "critic.pt"))
    gan.g_ema.load_state_dict(load_state(path, "generator_ema.pt"))
    gan.opt_g.load_state_dict(load_state(path, "optim_g.pt"))
    gan.opt_d.load_state_dict(load_state(path, "optim_d.pt"))
    state = load_state(path, "state.pt")
    gan.step = int(state["step"])
    torch.set_rng_state(state["torch_rng"])


def load_generator(path: str | Path, ema: bool = True):
    """Rebuild the generator from the checkpoint alone. Returns ``(generator, config, data_info, meta)``."""
    from musicgan.model import build_for_data

    meta = read_meta(path)
    cfg = from_dict(Config, meta["config"])
    data = meta["data"]
    g, _ = build_for_data(cfg.model, data)
    g.load_state_dict(load_state(path, "generator_ema.pt" if ema else "generator.pt"))
    return g.eval(), cfg, data, meta


_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")


def find_latest(run_or_checkpoint: str | Path) -> Path:
    """A checkpoint directory itself, or the highest-step complete checkpoint inside a run directory."""
    p = Path(run_or_checkpoint)
    if (p / "config.json").exists() and (p / "generator_ema.pt").exists():
        return p
    if not p.exists():
        raise CheckpointError(f"{p} does not exist")
    found = []
    for child in p.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and all((child / f).exists() for f in FILES):
            found.append((int(m.group(1)), child))
    if not found:
        raise CheckpointError(f"no complete checkpoint in {p}")
    return max(found)[1]
