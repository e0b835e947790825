"""Each embedded source owns its feature defaults: Python's build() and the CLI agree, --help shows them."""

from __future__ import annotations

import argparse

import pytest

from musicgan import cli
from musicgan.config import FeatureConfig, to_dict
from musicgan.data.sources import SOURCES, with_source_defaults


def _cli_features(*args: str) -> FeatureConfig:
    parser = argparse.ArgumentParser()
    cli.add_data_parser(parser.add_subparsers())
    return cli.feature_config_from_args(parser.parse_args(["data", "build", "--out", "x", *args]))


@pytest.mark.parametrize("source", [*SOURCES, "some/folder"])
def test_python_build_with_a_plain_feature_config_gets_the_cli_features(source):
    assert to_dict(with_source_defaults(source, FeatureConfig()).validate()) == to_dict(_cli_features("--source", source))


def test_notes_defaults_and_an_explicit_value_wins():
    fc = with_source_defaults("notes", FeatureConfig())
    assert (fc.kind, fc.pitch_low, fc.pitch_high, fc.n_mels, fc.clip_seconds) == ("mel", 48, 84, 80, 1.0)
    assert with_source_defaults("notes", FeatureConfig(n_mels=40)).n_mels == 40
    assert _cli_features("--source", "notes", "--n-mels", "40").n_mels == 40


def test_help_shows_each_sources_own_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "notes: 48:84" in text and "notes: 80" in text and "notes: 1.0" in text and "folk: melody" in text
