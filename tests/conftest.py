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
