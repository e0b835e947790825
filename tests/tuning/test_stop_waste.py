"""A trial that the scheduler stops stops training within a few steps of the decision (issue 17).

Steps a stopped trial trains after the decision are paid for and thrown away (they count in
benchmarks/tune_efficiency.py's step fraction). The decision reaches the Train loop through
tuning/search.py's StopSignal (a Tune callback on the driver writes ``stop.json`` in the trial's
folder; the loop checks for it every step and ends there, recording the step in events.jsonl).
"""

from __future__ import annotations

import json
import math

import pytest

TOTAL_STEPS, EVERY_STEPS, STOP_AT_STEP = 60, 3, 6
# The loop learns of the stop at the end of the step it is in; the report's way to Tune (Ray Train's
# poll, 0.1 s here) and Tune's bookkeeping take well under a second: one step, measured on two
# cores at a load average of 15 to 57 (up to 2.8 s after the decision). 4 leaves room.
BOUND_STEPS = 4


def _stop_at(step: int):
    from ray.tune.schedulers import FIFOScheduler

    class StopAt(FIFOScheduler):
        """Stops every trial at its first result at or past ``step``: a known decision, unlike ASHA's."""

        def on_trial_result(self, tune_controller, trial, result):
            return self.STOP if result["step"] >= step else self.CONTINUE

    return StopAt()


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_the_scheduler_stops_stops_training_within_a_few_steps(bach_data, tmp_path):
    from ray import tune

    from tuning.results import rows_from_grid, stop_waste
    from tuning.search import SearchSpec, base_config, make_trainable, stop_signal

    cfg = base_config(SearchSpec(data_dir=bach_data.out, space="", run_dir=str(tmp_path), preset="cpu-tiny",
                                 overrides=[f"train.total_steps={TOTAL_STEPS}",
                                            f"train.eval_every_steps={EVERY_STEPS}"]))
    trials = tmp_path / "trials"
    grid = tune.Tuner(
        make_trainable(cfg, bach_data.out, str(trials)), param_space={},
        tune_config=tune.TuneConfig(metric="FMD", mode="min", num_samples=1, scheduler=_stop_at(STOP_AT_STEP)),
        run_config=tune.RunConfig(name="tune", storage_path=str(tmp_path), verbose=0,
                                  callbacks=[stop_signal(str(trials), TOTAL_STEPS)]),
    ).fit()
    [row] = rows_from_grid(grid, [], TOTAL_STEPS, trials_dir=trials, metric="FMD")
    assert row.status == "stopped" and row.steps == STOP_AT_STEP, (row.status, row.steps, row.error)

    # the decision, as the driver recorded it
    decision = json.loads((trials / row.trial_id / "stop.json").read_text())
    assert decision["step"] == row.stop_step == STOP_AT_STEP

    # where the Train run really stopped: the loop's own record, exact to the step
    events = [json.loads(line) for line in (trials / row.trial_id / "events.jsonl").read_text().splitlines()]
    stopped = [e for e in events if e["event"] == "stopped"]
    assert len(stopped) == 1, events
    [waste] = stop_waste([row])
    assert waste["stopped_step"] == stopped[0]["step"] == row.steps_trained
    assert 0 <= waste["wasted_steps"] <= BOUND_STEPS, waste
    assert 0 <= waste["seconds"] < 30 and not math.isnan(waste["seconds"]), waste
    # it ended cleanly (no failure, so no restart from its checkpoint) and wrote no later evaluation
    assert len([e for e in events if e["event"] == "start"]) == 1
    assert not (trials / row.trial_id / f"checkpoint_{STOP_AT_STEP + EVERY_STEPS:06d}").exists()


def _row(trial_id: str, steps: int):
    from tuning.results import TrialRow

    return TrialRow(trial_id=trial_id, status="stopped", steps=steps, fmd=1.0, best_fmd=1.0, fmd_ratio=0.5,
                    diversity=1.0, copies=0.0, params={}, checkpoint=None)


def test_waste_is_counted_from_the_decision_to_the_runs_own_stop(tmp_path):
    """Hand-built trial folders: the loop's stopped event is exact; without it, the last evaluation."""
    from tuning.results import _stop_decision, _train_end, stop_waste

    exact, evals_only, not_stopped = (tmp_path / n for n in ("a", "b", "c"))
    for d in (exact, evals_only, not_stopped):
        d.mkdir()
        (d / "metrics.csv").write_text("step,FMD\n6,2.0\n12,1.5\n")
    for d in (exact, evals_only):
        (d / "stop.json").write_text(json.dumps({"step": 12, "time": 1001.0}))
    (exact / "events.jsonl").write_text(json.dumps({"event": "start", "time": 990.0, "step": 0}) + "\n"
                                        + json.dumps({"event": "stopped", "time": 1003.5, "step": 15}) + "\n")

    assert _train_end(exact) == (15, 1003.5)
    step, when = _train_end(evals_only)
    assert step == 12 and math.isnan(when)
    assert _stop_decision(exact) == (12, 1001.0) and _stop_decision(not_stopped)[0] == -1
    rows = []
    for d in (exact, evals_only, not_stopped):
        r = _row(d.name, 12)
        (r.steps_trained, r.trained_time), (r.stop_step, r.stop_time) = _train_end(d), _stop_decision(d)
        rows.append(r)
    exact_waste, evals_waste = stop_waste(rows)  # the trial not stopped is left out
    assert exact_waste == {"trial_id": "a", "decided_step": 12, "stopped_step": 15, "wasted_steps": 3,
                           "seconds": 2.5}
    # without the loop's record, all that is seen is the evaluation the decision was taken on
    assert evals_waste["stopped_step"] == 12 and evals_waste["wasted_steps"] == 0
    assert math.isnan(evals_waste["seconds"])
