"""train.cache_data: the auto decision (cache or stream) from hand-built manifest sizes, its
validation, and the shared feed, all without Ray."""

from __future__ import annotations

import pytest
import torch

from musicgan.config import Config, ConfigError, cache_data_setting, from_dict, to_dict
from musicgan.presets import load_preset
from musicgan.train import CACHE_MAX_BYTES, FETCH_STEPS, data_line, data_mode, feed_batches, train_split_bytes

MiB = 2**20


def manifest(kind: str, shape: list[int], train_examples: int) -> dict:
    return {"feature_config": {"kind": kind}, "example_shape": shape, "counts": {"train_examples": train_examples}}


def test_train_split_bytes_counts_decoded_rows_and_label_columns():
    # pianorolls decode to uint8: 4 x 64 x 48 = 12,288 bytes, plus 3 int64 columns = 12,312 a row
    assert train_split_bytes(manifest("pianoroll", [4, 64, 48], 4895)) == 4895 * 12_312
    # mels decode to float32: 1 x 64 x 126 x 4 = 32,256 bytes, plus 24
    assert train_split_bytes(manifest("mel", [1, 64, 126], 432)) == 432 * 32_280


def test_auto_caches_the_chorales():
    mode, why = data_mode("auto", train_split_bytes(manifest("pianoroll", [4, 64, 48], 4895)), 4 * 2**30)
    assert mode == "cache"
    assert "57 MiB" in why and "auto" in why


@pytest.mark.parametrize("train_bytes, store_bytes, mode", [
    (CACHE_MAX_BYTES, None, "cache"),           # the cap itself still fits
    (CACHE_MAX_BYTES + 1, None, "stream"),      # store unknown: the 1 GiB cap alone
    (CACHE_MAX_BYTES + 1, 64 * 2**30, "stream"),  # a big store does not lift the cap
    (256 * MiB, 1024 * MiB, "cache"),           # a quarter of a small store
    (256 * MiB + 1, 1024 * MiB, "stream"),      # more than a quarter of it
    (0, 1024 * MiB, "cache"),
])
def test_auto_limit_is_a_gib_or_a_quarter_of_the_store(train_bytes, store_bytes, mode):
    assert data_mode("auto", train_bytes, store_bytes)[0] == mode


def test_the_reason_names_the_rule_that_decided():
    assert "25% of the 1,024 MiB object store" in data_mode("auto", 300 * MiB, 1024 * MiB)[1]
    assert "1,024 MiB cap" in data_mode("auto", 2 * CACHE_MAX_BYTES, 64 * 2**30)[1]


def test_explicit_settings_override_the_size():
    assert data_mode(True, 10 * CACHE_MAX_BYTES, 1024 * MiB)[0] == "cache"
    assert data_mode("true", 10 * CACHE_MAX_BYTES)[0] == "cache"  # as an override leaves it
    assert data_mode(False, 1)[0] == "stream"
    assert data_mode("off", 1)[0] == "stream"
    assert "train.cache_data=false" in data_mode(False, 1)[1]


def test_log_line_says_which_mode():
    assert data_line("cache", "x").startswith("data: cached in the object store (x)")
    assert data_line("stream", "y").startswith("data: streamed from the shards (y)")


def test_default_is_auto_and_overrides_are_normalised():
    assert load_preset("cpu").train.cache_data == "auto"
    assert load_preset("cpu", ["train.cache_data=false"]).train.cache_data is False
    assert load_preset("cpu", ["train.cache_data=TRUE"]).train.cache_data is True
    assert load_preset("cpu", ["train.cache_data=auto"]).train.cache_data == "auto"


def test_presets_that_cache_stay_valid():
    for name in ("audio-tiny", "audio-cpu", "audio-gpu"):
        assert load_preset(name).train.cache_data is True


def test_a_saved_bool_config_still_loads():
    d = to_dict(Config())
    d["train"]["cache_data"] = False  # a config saved before auto existed
    assert from_dict(Config, d).validate().train.cache_data is False


@pytest.mark.parametrize("value", ["maybe", "", 2, None])
def test_bad_values_are_a_clear_config_error(value):
    with pytest.raises(ConfigError, match="train.cache_data must be auto, true or false"):
        cache_data_setting(value)


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="train.cache_data must be auto, true or false, not 'sometimes'"):
        load_preset("cpu", ["train.cache_data=sometimes"])
    with pytest.raises(ConfigError, match="train.cache_data"):
        data_mode("sometimes", 1)


class FakeShard:
    """Stands in for a Ray Data shard: each epoch yields the given fetches."""

    def __init__(self, fetch_rows: list[int]):
        self.fetch_rows = fetch_rows
        self.calls = []

    def iter_torch_batches(self, **kwargs):
        self.calls.append(kwargs)
        start = 0
        for n in self.fetch_rows:
            yield {"x": torch.arange(start, start + n, dtype=torch.uint8).view(n, 1, 1, 1),
                   "label": torch.zeros(n, dtype=torch.long)}
            start += n


def _to_tensors(b, rows):
    return b["x"][rows].float(), None


def test_feed_cuts_each_fetch_into_full_batches_epoch_after_epoch():
    cfg = load_preset("cpu", ["train.batch_size_per_worker=4", "train.shuffle_buffer_rows=64"])
    shard = FakeShard([10, 8])  # 2 full batches from the first fetch (2 rows left over), 2 from the second
    feed = feed_batches(shard, cfg, _to_tensors)
    got = [next(feed)[0].flatten().tolist() for _ in range(5)]
    assert got[:4] == [[0, 1, 2, 3], [4, 5, 6, 7], [10, 11, 12, 13], [14, 15, 16, 17]]
    assert got[4] == [0, 1, 2, 3]  # the next epoch
    assert shard.calls[0]["batch_size"] == 4 * FETCH_STEPS and shard.calls[0]["local_shuffle_buffer_size"] == 64


def test_feed_without_a_full_batch_is_an_error():
    cfg = load_preset("cpu", ["train.batch_size_per_worker=32"])
    with pytest.raises(RuntimeError, match="no full batch of 32"):
        next(feed_batches(FakeShard([5]), cfg, _to_tensors))
