"""Shared fixtures. One Ray instance per pytest session: each start costs seconds on two cores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_instance():
    import ray

    from musicgan.ray_utils import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def bach_midi():
    """Cached MIDI of the first 24 Bach chorales (converted once, shared by every test)."""
    from musicgan.data.corpus import ensure_converted

    midi, _ = ensure_converted("bach", limit=24, progress=False)
    assert len(midi) >= 20
    return sorted(midi)


@pytest.fixture(scope="session")
def bach_data(ray_instance, bach_midi, tmp_path_factory):
    """A small data build of those chorales, shared by the training/reader tests."""
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build

    out = tmp_path_factory.mktemp("bach-data")
    result = build("bach", str(out), FeatureConfig(), limit=24, files_per_shard=8, progress=False)
    return result


NOTES_GRID = dict(pitch_range=(60, 66), instruments=["piano", "flute"], velocities=[70, 110])


@pytest.fixture(scope="session")
def notes_data(ray_instance, tmp_path_factory):
    """A tiny ``notes`` build: 6 pitches (60..65) x piano, flute x 2 velocities = 24 one-second clips."""
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build

    fc = FeatureConfig(kind="mel", clip_seconds=1.0, n_mels=80, pitch_low=NOTES_GRID["pitch_range"][0],
                       pitch_high=NOTES_GRID["pitch_range"][1])
    out = tmp_path_factory.mktemp("notes-data")
    return build("notes", str(out), fc, instruments=NOTES_GRID["instruments"], velocities=NOTES_GRID["velocities"],
                 files_per_shard=8, progress=False)


def make_audio_checkpoint(notes_data, path, seed: int = 0):
    """An audio-tiny spectrogram generator (untrained) saved as training saves it."""
    import torch

    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest
    from musicgan.gan import make_gan
    from musicgan.model import build_for_data
    from musicgan.presets import load_preset

    cfg = load_preset("audio-tiny")
    data = ckpt.data_info(load_manifest(notes_data.out))
    torch.manual_seed(seed)
    g, d = build_for_data(cfg.model, data)
    gan = make_gan(g, d, cfg)
    gan.step = 6
    return ckpt.save(path, gan, cfg, data)


@pytest.fixture(scope="session")
def audio_checkpoint(notes_data, tmp_path_factory):
    return make_audio_checkpoint(notes_data, tmp_path_factory.mktemp("audio-ckpt") / "checkpoint_000006")
