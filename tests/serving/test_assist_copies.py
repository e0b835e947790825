"""avoid_copies over HTTP, with a model made to copy: a second untrained cpu-masked-tiny checkpoint
whose originality index is built from the very rolls the served model answers for seed S (so those
answers copy a "training phrase" by construction). Asked again with avoid_copies on, each sample is
re-drawn from a derived seed and the answer says so; with it off, it comes back as it was, flagged as a
copy at overlap 1. Its own module: it deploys its own app at ``/`` (twice: without the index, to learn
the rolls, then with it)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serving.test_assist_routes import answer, generate, harmonize_json, model_roll

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SEED = 5


@pytest.fixture(scope="module")
def copying_model(bach_data, tmp_path_factory):
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest
    from tests.checkpoints import save_untrained

    root = tmp_path_factory.mktemp("copies")
    return save_untrained(root / "run" / "checkpoint_000004", "cpu-masked-tiny",
                          ckpt.data_info(load_manifest(bach_data.out)), seed=2)


def test_a_sample_that_copies_is_redrawn_and_the_answer_says_so(serve_port, copying_model):
    from ray import serve

    from musicgan.originality import INDEX_FILE, OriginalityIndex
    from serving.app import build_app
    from tests.serving.conftest import deploy

    calls = {"generate": lambda **o: generate(seed=SEED, n_bars=4, **o),
             "harmonize": lambda **o: harmonize_json(seed=SEED, **o)}
    http = deploy(build_app(str(copying_model)), "musicgan", serve_port)
    assert http.json("/v1/model")["originality"] is None  # no index yet: no figure, nothing re-drawn
    first = {}
    for name, call in calls.items():
        headers, first[name] = answer(http, call(avoid_copies=False))
        assert "x-musicgan-max-overlap" not in headers and first[name]["samples"][0]["originality"] is None
    rolls = np.stack([model_roll(first[name], 0) for name in calls])
    assert rolls.reshape(len(rolls), -1).any(1).all(), "an empty roll overlaps nothing: no copy to catch"
    OriginalityIndex.build(rolls, steps_per_bar=16).save(copying_model / INDEX_FILE)

    serve.delete("musicgan")
    http = deploy(build_app(str(copying_model)), "musicgan", serve_port)
    assert http.json("/v1/model")["originality"] == {"index_phrases": 2, "copy_threshold": 0.9}
    for name, call in calls.items():
        headers, doc = answer(http, call(avoid_copies=False))
        orig = doc["samples"][0]["originality"]
        assert headers["x-musicgan-max-overlap"] == "1.000" and headers["x-musicgan-redraws"] == "0", (name, headers)
        assert orig == {"max_overlap": 1.0, "redraws": 0, "copy_threshold": 0.9, "copy": True}, (name, orig)
        assert doc["samples"][0]["pianoroll"] == first[name]["samples"][0]["pianoroll"], name

        headers, doc = answer(http, call(avoid_copies=True))
        orig = doc["samples"][0]["originality"]
        redraws = int(headers["x-musicgan-redraws"])
        assert 1 <= redraws <= 3 and orig["redraws"] == redraws, (name, headers, orig)
        assert headers["x-musicgan-max-overlap"] == f"{orig['max_overlap']:.3f}", (name, headers, orig)
        assert doc["samples"][0]["pianoroll"] != first[name]["samples"][0]["pianoroll"], f"{name}: not re-drawn"
        # re-drawn until it no longer copies, or out of tries (3) and said to copy still
        assert orig["copy"] is (orig["max_overlap"] > 0.9) and (not orig["copy"] or redraws == 3), (name, orig)
