"""``musicgan evaluate --task`` (musicgan/assist/evaluate.py) on the small bach build and an untrained
cpu-masked-tiny checkpoint: every target is reported with a boolean verdict, the given soprano is
kept, the JSON is written and the table names every target; an unmasked model and a bad --task are
refused cleanly. The figures of an untrained model mean nothing; the report's contract does."""

from __future__ import annotations

import json

import pytest

from musicgan import cli
from tests.checkpoints import save_untrained

pytestmark = [pytest.mark.ray]

TARGETS = {
    "harmonize": {"harmonize_soprano_kept", "harmonize_chord_agreement_vs_clamp", "harmonize_parallels_per_100_vs_bach",
                  "harmonize_crossing_vs_bach", "harmonize_spacing_vs_bach", "harmonize_FMD_ratio", "harmonize_C2ST"},
    "continue": {"continue_key_agreement_vs_bach", "continue_seam_smoothness"},
    "long": {"long_seam_smoothness", "long_seam_every_boundary", "long_seam_closer_than_side_by_side",
             "long_key_changes_vs_bach"},
}


def make_checkpoint(bach_data, path, preset: str) -> str:
    """An untrained ``preset`` generator saved as training saves it, shaped by the build."""
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest

    return str(save_untrained(path, preset, ckpt.data_info(load_manifest(bach_data.out))))


@pytest.fixture(scope="module")
def masked(bach_data, tmp_path_factory):
    return make_checkpoint(bach_data, tmp_path_factory.mktemp("masked-run") / "checkpoint_000006", "cpu-masked-tiny")


@pytest.fixture(scope="module")
def plain(bach_data, tmp_path_factory):
    return make_checkpoint(bach_data, tmp_path_factory.mktemp("plain-run") / "checkpoint_000006", "cpu-tiny")


def check_targets(targets: dict, expected: set) -> None:
    assert set(targets) == expected
    for name, t in targets.items():
        assert isinstance(t["met"], bool), name
        assert {"value", "target"} <= set(t), name


def test_harmonize_and_continue_report_every_target_and_write_the_json(masked, bach_data, tmp_path):
    from musicgan.assist.evaluate import evaluate_tasks, table_text

    out = tmp_path / "tasks.json"
    report = evaluate_tasks(masked, bach_data.out, task="harmonize", n=32, json_path=str(out))
    assert report["n"] == 32 and report["json_path"] == str(out)
    check_targets(report["targets"], TARGETS["harmonize"])
    h = report["tasks"]["harmonize"]
    assert h["ours"]["soprano_kept"] == 1.0
    assert report["targets"]["harmonize_soprano_kept"]["met"] is True
    assert {"ours", "clamp", "random", "bach"} <= set(h)
    assert report["passed"] == all(t["met"] for t in report["targets"].values())
    saved = json.loads(out.read_text())
    assert set(saved["targets"]) == TARGETS["harmonize"] and saved["tasks"]["harmonize"]["ours"]["soprano_kept"] == 1.0
    text = table_text(report)
    assert all(k in text for k in TARGETS["harmonize"]) and str(out) in text

    report = evaluate_tasks(masked, bach_data.out, task="continue", n=32, json_path=str(tmp_path / "c.json"))
    check_targets(report["targets"], TARGETS["continue"])
    c = report["tasks"]["continue"]
    assert {"ours", "clamp", "random", "bach"} <= set(c)
    assert 0.0 <= c["bach"]["key_agreement"] <= 1.0
    assert all(k in table_text(report) for k in TARGETS["continue"])


def test_long_pieces_report_every_boundary(masked, bach_data, tmp_path, monkeypatch):
    from musicgan.assist import evaluate as E

    monkeypatch.setattr(E, "LONG_PIECES", 2)
    monkeypatch.setattr(E, "LONG_BARS", 8)
    # the default json path: beside the checkpoint, named for the tasks
    report = E.evaluate_tasks(masked, bach_data.out, task="long", n=32)
    check_targets(report["targets"], TARGETS["long"])
    ours = report["tasks"]["long"]["ours"]
    assert ours["pieces"] == 2 and ours["bars"] == 8
    assert len(ours["seam_smoothness_per_boundary"]) == 2          # windows meet at bars 4 and 6
    assert report["json_path"].endswith(".json") and "evaluation-tasks-" in report["json_path"]
    assert json.loads(open(report["json_path"]).read())["tasks"]["long"]["ours"]["bars"] == 8
    assert all(k in E.table_text(report) for k in TARGETS["long"])


def test_an_unmasked_checkpoint_is_refused_naming_model_masked(plain, bach_data, capsys):
    from musicgan.assist.evaluate import TaskEvaluator
    from musicgan.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="model.masked"):
        TaskEvaluator(plain, bach_data.out, n=8)
    code = cli.main(["evaluate", "--model", plain, "--data", bach_data.out, "--task", "harmonize", "--n", "8"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "model.masked" in err and "Traceback" not in err


def test_a_bad_task_is_an_argparse_error(masked, bach_data, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", "--model", masked, "--data", bach_data.out, "--task", "fugue"])
    assert e.value.code == 2
    assert "invalid choice: 'fugue'" in capsys.readouterr().err

