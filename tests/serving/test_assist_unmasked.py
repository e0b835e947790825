"""An unmasked model (cpu-tiny: it writes phrases from scratch only) behind the assistant's routes: each
answers a clear 422 naming the model's kind, never a 500, whether the body is JSON or a MIDI upload, and
``GET /v1/model`` says it does ``generate`` alone. Its own module: ``served`` and ``served_masked`` both
sit at ``/``."""

from __future__ import annotations

import json

import pytest

from tests.serving.test_assist_routes import melody_notes, midi_file, piece_notes, post_form

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_model_says_generate_only(served):
    info = served.json("/v1/model")
    assert info["tasks"] == ["generate"] and info["masked"] is False
    assert info["hop_bars"] == info["phrase_bars"] == 4
    assert info["voices"] == ["soprano", "alto", "tenor", "bass"]


@pytest.mark.parametrize("path, body", [
    ("/v1/harmonize", {"melody": melody_notes(), "seed": 1, "format": "json"}),
    ("/v1/harmonize", {"example": "bwv1.6"}),
    ("/v1/continue", {"notes": piece_notes(2), "n_bars": 2}),
    ("/v1/inpaint", {"notes": piece_notes(4), "bars": [2, 3], "voices": ["alto"]}),
])
def test_assistant_routes_get_a_422_naming_the_model_kind(served, path, body):
    status, _, content = served.call("POST", path, body)
    assert status == 422, (path, status, content[:300])
    message = json.loads(content)["detail"]
    assert "unmasked pianoroll model" in message and "masked model" in message, message


def test_an_upload_to_an_unmasked_model_gets_the_same_422(served):
    midi = midi_file({"melody": melody_notes()})
    status, _, content = post_form(served, "/v1/harmonize", {"seed": "1"}, midi)
    assert status == 422 and "unmasked pianoroll model" in json.loads(content)["detail"], content[:300]
    # and /v1/generate on it still keeps to whole phrases
    status, _, content = served.generate(n_bars=6, format="json")
    assert status == 422 and "multiple of 4" in content.decode(), content[:300]
