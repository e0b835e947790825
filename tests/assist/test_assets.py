"""What a served model ships beside its weights (musicgan/assist/assets.py): the originality index of
the build's training phrases and held-out example melodies; and that promoting a model writes them
into its registry version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musicgan.assist.assets import EXAMPLES_FILE, example_id, read_assets, write_assets
from musicgan.originality import INDEX_FILE

pytestmark = pytest.mark.ray  # the shared Bach build is made with Ray Data


def test_example_ids_drop_the_corpus_prefix_and_extension():
    assert example_id("bach__bwv1.6.mid") == "bwv1.6"
    assert example_id("some/folder/tune.mid") == "tune"
    assert example_id("plain") == "plain"


def test_written_assets_index_the_training_phrases_and_hold_out_melodies(bach_data, tmp_path):
    from musicgan.data.shards import ShardReader, load_manifest

    manifest = load_manifest(bach_data.out)
    written = write_assets(bach_data.out, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([INDEX_FILE, EXAMPLES_FILE])
    index, examples = read_assets(tmp_path)
    assert index.n_phrases == written["index_phrases"] == manifest["counts"]["train_examples"]
    train = ShardReader(bach_data.out, "train").arrays()["x"] > 0
    assert index.max_overlap(train[3]) == 1.0  # a training phrase is its own copy
    val = ShardReader(bach_data.out, "val").arrays()
    val_sources = {example_id(s) for s in val["source"]}
    assert examples and [e["id"] for e in examples] == written["examples"]
    fc = manifest["feature_config"]
    for e in examples:
        assert e["id"] in val_sources  # held out: never trained on
        assert e["n_bars"] == 8 and e["voice"] == fc["track_names"][0]
        starts = [n["start_beat"] for n in e["notes"]]
        assert starts == sorted(starts) and max(n["start_beat"] + n["duration_beats"] for n in e["notes"]) <= 32
        assert all(fc["pitch_low"] <= n["pitch"] < fc["pitch_high"] for n in e["notes"])
    # the melody is the val phrase's top voice: its first bar as a roll equals the build's
    e = examples[0]
    first = [i for i, s in enumerate(val["source"]) if example_id(s) == e["id"]]
    rolls = val["x"][first] > 0
    line = np.zeros((16, fc["pitch_high"] - fc["pitch_low"]), bool)
    for n in e["notes"]:
        a, b = int(n["start_beat"] * 4), int((n["start_beat"] + n["duration_beats"]) * 4)
        if a < 16:
            line[a: min(b, 16), n["pitch"] - fc["pitch_low"]] = True
    assert any(np.array_equal(r[0, :16], line) for r in rolls)


def test_read_assets_without_any_is_empty(tmp_path):
    assert read_assets(tmp_path, None) == (None, [])


def test_promote_ships_the_assets_with_the_version(bach_data, tmp_path):
    from musicgan.registry import promote, resolve, summary_text
    from tests.checkpoints import save_untrained
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest

    run = tmp_path / "run"
    save_untrained(run / "checkpoint_000002", "cpu-tiny", ckpt.data_info(load_manifest(bach_data.out)))
    (run / "config.json").write_text(json.dumps({"data_dir": bach_data.out}))
    record = promote(run, str(tmp_path / "models"), "bach")
    version = tmp_path / "models" / "bach" / "v1"
    assert (version / INDEX_FILE).is_file() and (version / EXAMPLES_FILE).is_file()
    assert record["assets"]["index_phrases"] == load_manifest(bach_data.out)["counts"]["train_examples"]
    assert "originality index of" in summary_text(record)
    path, _ = resolve(str(tmp_path / "models" / "bach" / "latest"))
    index, examples = read_assets(path, path.parent)  # where a serving replica looks
    assert index is not None and [e["id"] for e in examples] == record["assets"]["examples"]

    (run / "config.json").write_text(json.dumps({"data_dir": str(tmp_path / "gone")}))
    record = promote(run, str(tmp_path / "models"), "bach")
    assert "could not read the training data" in record["assets"]["missing"]
    assert not (tmp_path / "models" / "bach" / "v2" / INDEX_FILE).exists()
    assert "no originality index" in summary_text(record)
