"""The typed config tree: dict round trips, overrides, validation, hashing."""

from __future__ import annotations

import pytest

from musicgan.config import ConfigError, FeatureConfig, apply_overrides, from_dict, to_dict


def test_round_trip_through_a_plain_dict():
    fc = FeatureConfig(bars=2, transpose=[-1, 0, 1], track_names=["m"], track_mode="merge")
    again = from_dict(FeatureConfig, to_dict(fc))
    assert again == fc and again.hash() == fc.hash()


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(FeatureConfig, {"barz": 4})


def test_overrides_are_typed():
    fc = apply_overrides(FeatureConfig(), ["bars=8", "min_active_fraction=0.25", "transpose=-2,0,2",
                                          "track_names=a,b"])
    assert fc.bars == 8 and fc.min_active_fraction == 0.25
    assert fc.transpose == [-2, 0, 2] and fc.track_names == ["a", "b"]
    with pytest.raises(ConfigError, match="unknown config key"):
        apply_overrides(FeatureConfig(), ["nope=1"])
    with pytest.raises(ConfigError, match="bad value for bars"):
        apply_overrides(FeatureConfig(), ["bars=four"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(FeatureConfig(), ["bars"])


def test_hash_changes_with_any_field():
    base = FeatureConfig().hash()
    assert FeatureConfig(steps_per_bar=24).hash() != base
    assert FeatureConfig(transpose=[0, 1]).hash() != base
    assert FeatureConfig().hash() == base


@pytest.mark.parametrize("kwargs, message", [
    ({"pitch_low": 80, "pitch_high": 60}, "pitch range"),
    ({"steps_per_bar": 10}, "multiple of 4"),
    ({"track_mode": "merge"}, "exactly one track"),
    ({"kind": "video"}, "kind"),
])
def test_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FeatureConfig(**kwargs).validate()


def test_import_musicgan_does_not_import_ray():
    import subprocess
    import sys

    code = ("import sys, musicgan, musicgan.config, musicgan.data.pianoroll, musicgan.data.shards; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cpu_preset_turns_on_the_voice_fixes_and_defaults_keep_the_old_model():
    from musicgan.config import Config
    from musicgan.presets import load_preset

    cpu = load_preset("cpu")
    assert cpu.model.leap_prior and cpu.model.voice_register and cpu.model.critic_register
    assert cpu.loss.voice_stats_weight > 0 and cpu.loss.parallels_weight > 0 and cpu.loss.vertical_weight > 0
    long = load_preset("cpu-long")
    assert long.train.total_steps == 2 * cpu.train.total_steps and long.loss == cpu.loss and long.model == cpu.model
    old = Config()  # what an old checkpoint's config without these keys becomes
    assert not (old.model.leap_prior or old.model.voice_register or old.model.critic_register)
    assert old.model.harmony_head and old.loss.voice_stats_weight == 0 and old.loss.parallels_weight == 0
    assert old.loss.vertical_weight == 0


@pytest.mark.parametrize("overrides, message", [
    (["model.output=binary", "model.leap_prior=true"], "leap_prior needs"),
    (["loss.voice_stats_weight=-1"], "at least 0"),
    (["model.family=spectrogram", "loss.parallels_weight=1"], "pianoroll family"),
    (["loss.vertical_weight=-0.5"], "at least 0"),
])
def test_voice_options_are_validated(overrides, message):
    from musicgan.config import Config

    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), overrides).validate()
