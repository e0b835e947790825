"""serving/assist.py without Ray: a request made into a fill job on a masked model trained on several
styles (the style reaches the job as its label; a wrong one is a 422), and the cost of a job in windows."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi import HTTPException

from musicgan.config import FeatureConfig
from serving import assist
from tests.checkpoints import save_untrained

FC = FeatureConfig()
DATA = {"kind": "pianoroll", "feature_config": dataclasses.asdict(FC), "feature_hash": "test",
        "example_shape": [4, FC.bars * FC.steps_per_bar, FC.pitch_high - FC.pitch_low],
        "labels": ["bach", "palestrina"], "bars": FC.bars, "steps_per_bar": FC.steps_per_bar,
        "pitch_low": FC.pitch_low, "track_names": FC.track_names,
        "voice_ranges": [[60, 81], [53, 74], [48, 69], [36, 62]]}
MELODY = [{"pitch": p, "start_beat": i, "duration_beats": 1} for i, p in enumerate([72, 74, 76, 77, 79, 77, 76, 74])]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from serving.model import LoadedModel

    path = save_untrained(tmp_path_factory.mktemp("styled") / "checkpoint_000002", "cpu-masked-tiny", DATA)
    return LoadedModel(str(path))


def test_the_style_reaches_the_job_and_a_wrong_one_is_a_422(model):
    assert model.info()["styles"] == ["bach", "palestrina"] and model.tasks[1:] == ["harmonize", "continue", "inpaint"]
    body = assist.HarmonizeRequest.model_validate({"melody": MELODY, "condition": "palestrina"})
    task = assist.make_task("harmonize", body, None, model, seed=3)
    assert task.job.label == 1 and task.n_bars == 2 and task.job.known[0].all() and not task.job.known[1:].any()
    plain = assist.make_task("harmonize", assist.HarmonizeRequest.model_validate({"melody": MELODY}), None, model, 3)
    assert plain.job.label is None
    with pytest.raises(HTTPException) as e:
        assist.make_task("harmonize", assist.HarmonizeRequest.model_validate({"melody": MELODY, "condition": "jazz"}),
                         None, model, seed=3)
    assert e.value.status_code == 422 and "palestrina" in e.value.detail


def test_inpaint_and_continue_jobs_know_exactly_the_cells_outside_what_is_asked(model):
    notes = [{**n, "track": t} for t in ("soprano", "bass") for n in MELODY] + \
            [{**n, "start_beat": n["start_beat"] + 8, "track": "alto"} for n in MELODY]  # 4 bars
    body = assist.InpaintRequest.model_validate({"notes": notes, "bars": [2, 3], "voices": ["alto", "Tenor"]})
    task = assist.make_task("inpaint", body, None, model, seed=1)
    known, spb = task.job.known, FC.steps_per_bar
    assert not known[1:3, spb: 3 * spb].any()  # alto and tenor in bars 2-3: to write
    assert known[[0, 3]].all() and known[1:3, :spb].all() and known[1:3, 3 * spb:].all()
    body = assist.ContinueRequest.model_validate({"notes": notes, "n_bars": 3})
    task = assist.make_task("continue", body, None, model, seed=1)
    assert task.n_bars == 7 and task.job.known.shape[1] == 7 * spb
    # the prompt had no tenor: it is written in the prompt bars too; the rest of the prompt is given
    assert not task.job.known[2].any() and task.job.known[[0, 1, 3], : 4 * spb].all()
    assert not task.job.known[:, 4 * spb:].any()
