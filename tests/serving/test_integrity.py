"""A replica refuses a registry version whose files do not match the sha256 table promote recorded,
and keeps serving the model it has. ``serving.model.LoadedModel`` and the replica's watch loop are
exercised directly: no Serve, no Ray."""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace

import pytest
import torch

from musicgan import checkpoint as ckpt
from musicgan import registry
from musicgan.gan import make_gan
from musicgan.model import build_models
from musicgan.presets import load_preset

DATA = {"feature_config": {}, "feature_hash": "f00d", "example_shape": [2, 32, 12], "labels": ["all"], "bars": 2,
        "steps_per_bar": 16, "pitch_low": 60, "track_names": ["a", "b"]}


def save_checkpoint(path, seed: int):
    cfg = load_preset("cpu-tiny")
    torch.manual_seed(seed)
    g, d = build_models(cfg.model, DATA["example_shape"], DATA["bars"], 1)
    gan = make_gan(g, d, cfg)
    gan.step = 6
    return ckpt.save(path, gan, cfg, DATA)


def flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture
def reg(tmp_path):
    root = tmp_path / "models"
    registry.promote(save_checkpoint(tmp_path / "a" / "checkpoint_000006", seed=1), str(root), "bach")
    return root


def test_loaded_model_loads_an_intact_version_and_refuses_a_tampered_one(reg, tmp_path):
    from serving.model import LoadedModel

    latest = str(reg / "bach" / "latest")
    model = LoadedModel(latest)
    assert (model.name, model.version) == ("bach", "v1")
    registry.promote(save_checkpoint(tmp_path / "b" / "checkpoint_000006", seed=2), str(reg), "bach")
    flip_a_byte(reg / "bach" / "v2" / "checkpoint" / "generator_ema.pt")
    for ref in (latest, str(reg / "bach" / "v2"), str(reg / "bach" / "v2" / "checkpoint")):
        with pytest.raises(ckpt.CheckpointError, match="sha256"):
            LoadedModel(ref)
    # a tampered config.json (the architecture the replica would build) is refused too
    (reg / "bach" / "v2" / "checkpoint" / "generator_ema.pt").write_bytes(
        (tmp_path / "b" / "checkpoint_000006" / "generator_ema.pt").read_bytes())
    assert LoadedModel(latest).version == "v2"
    cfg = reg / "bach" / "v2" / "checkpoint" / "config.json"
    cfg.write_text(cfg.read_text().replace('"step": 6', '"step": 7'))
    with pytest.raises(ckpt.CheckpointError, match="config.json has sha256"):
        LoadedModel(latest)
    assert LoadedModel(str(reg / "bach" / "v1")).version == "v1"


def test_the_watch_loop_keeps_serving_the_old_model_when_the_new_version_is_tampered(reg, tmp_path, monkeypatch):
    import serving.app as app
    from serving.model import LoadedModel, pointer_of

    latest = str(reg / "bach" / "latest")
    replica = SimpleNamespace(model=LoadedModel(latest), pointer=pointer_of(latest), watch_s=0.0)
    assert replica.pointer
    registry.promote(save_checkpoint(tmp_path / "b" / "checkpoint_000006", seed=2), str(reg), "bach")
    flip_a_byte(reg / "bach" / "v2" / "checkpoint" / "generator_ema.pt")
    assert json.loads((reg / "bach" / "latest").read_text()) == {"version": "v2"}
    said = []

    async def watch_once():
        """Run the replica's real watch loop until it logs something: a refused load (warning) or a swap (info)."""
        task = asyncio.ensure_future(app.MusicGAN.func_or_class._watch(replica))
        for kind in ("warning", "info"):
            def log(msg, *a, kind=kind, **k):
                said.append((kind, str(msg)))
                task.cancel()

            monkeypatch.setattr(app.logger, kind, log)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=120)

    asyncio.run(watch_once())
    assert said and said[-1][0] == "warning" and "v2" in said[-1][1] and "sha256" in said[-1][1], said
    assert replica.model.version == "v1"  # still the model it had
    registry.promote(save_checkpoint(tmp_path / "c" / "checkpoint_000006", seed=3), str(reg), "bach")
    asyncio.run(watch_once())
    assert said[-1][0] == "info" and replica.model.version == "v3", said
