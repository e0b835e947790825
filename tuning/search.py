"""Hyperparameter search over the GAN on Ray Tune, Train-in-Tune style.

Each trial is a Tune *function* that builds and fits a ``TorchTrainer`` through
:func:`musicgan.train.fit`, with ``TuneReportCallback`` in its ``RunConfig``: every report of
the Train run (metrics plus the checkpoint path, every ``eval_every_steps``) reaches Tune, whose
scheduler may stop the trial. Passing a Trainer to ``Tuner`` is deprecated in Ray 2.60 and not
used. PBT clones trials through *Tune* checkpoints, which that callback does not forward, so
under PBT a small callback hands ``(metrics, checkpoint)`` to the trial function, which reports
both to Tune itself (see :func:`_run_pbt_segment`).

The objective (``--objective``), lower is better, reported at every evaluation:

- ``quality`` (the default for pianoroll models): the composite of :mod:`musicgan.evaluate`, the
  same targets as the ``musicgan evaluate`` table, on the trial's ``eval_samples`` phrases::

      quality = log2(max(1, FMD / FMD_floor)) + sum over targets t of excess_t

  ``FMD_floor`` is FMD between as many training phrases and the held-out phrases (the data's own
  noise). ``excess_t`` is how many doublings (log2) a measure lies beyond its target, 0 when met:
  leap, range and today's metrics within 15% of held-out; octave leaps, parallel fifths/octaves,
  crossing and spacing at most 2x held-out; vertical-interval distance at most 2x the training
  phrases'; C2ST accuracy at most 0.85 (on the margin above chance 0.5); diversity at least 0.8;
  copies under 1%. 0 = every target met with FMD at the floor.
- ``FMD``: the Frechet music-statistics distance alone, as before (the only one for audio models;
  ``auto`` picks it for them). FMD stays in the results table either way, and the summary names
  the trial FMD alone would have promoted, with both trials' voice measures.

When the scheduler stops a trial, the driver writes ``stop.json`` into the trial's folder; the
Train loop ends at the end of the step it is in, and the trial's actor waits for that before Tune
ends it (:class:`StopSignal`). Steps trained after the decision are paid for and thrown away.

Promotion (``--promote``, ``musicgan promote --model RUN``) takes best.json's ``best``: the best
trial by the objective.

Layout of a search run directory::

    RUN/search.json          what was asked (space, base config, scheduler): a re-run must match
    RUN/tune/                Tune's experiment state (Tuner.restore resumes from it)
    RUN/trials/<trial_id>/   each trial's Train run: checkpoints, metrics.csv, samples, plots;
                             stop.json when the scheduler stopped it (step, time)
    RUN/results.csv  results.md  objective.png  best.json

Run ``musicgan tune --help`` (or ``python -m tuning.search --help``) for the options.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from musicgan.config import Config, ConfigError, from_dict, to_dict
from musicgan.families import get_family

DRIVER_CPUS = 0.1  # a trial's own actor; the default 1 CPU starves its Train workers (FIELD-NOTES)
DATA_CPUS = 0.25  # Ray Data read/decode tasks of a trial: fractions fit beside the Train workers
MODE = "min"
OBJECTIVES = ("auto", "quality", "FMD")
PBT_KEYS = ("optim.lr_g", "optim.lr_d")
STOP_FILE = "stop.json"
"""Written into a trial's folder by the driver the moment the scheduler stops the trial
(:class:`StopSignal`); the Train loop checks for it every step and ends there (musicgan.train.STOP_FILE)."""
# Ray Train's controller polls its workers for reports this often (Ray's default 2 s). A report
# reaches Tune only at a poll, and the trial trains on meanwhile: up to 2 s of steps that a stop
# decided on that report throws away. Propagated by Ray from the trial's process to its controller.
TRAIN_POLL_INTERVAL_S = "0.1"
STOP_GRACE_S = 10.0
"""How long a stopped trial's actor waits for its Train run to end at the stop file before Tune
ends the actor anyway. Ended with the actor, the run's workers are killed mid-step and its
placement group is freed only by Ray Train's cleaner (which fails where one machine runs several
Ray instances, and then later trials wait for CPUs that never come back)."""
_TRAIN_RETURNED: dict[str, threading.Event] = {}  # trial id -> set once run_trial returned (trial actor)


@dataclass
class SearchSpec:
    """Everything ``musicgan tune`` was asked; stored as search.json so a re-run can resume it."""

    data_dir: str
    space: str
    run_dir: str
    trials: int = 8
    scheduler: str = "asha"
    """``asha`` (stop poor trials early), ``pbt`` (perturb learning rates, exploit via
    checkpoints) or ``none`` (every trial to the end)."""
    searcher: str = "random"
    """``random`` or ``tpe`` (Optuna, if installed)."""
    preset: str = "cpu-tiny"
    overrides: list[str] = field(default_factory=list)
    workers_per_trial: int = 1
    max_concurrent: int = 0
    """0 = as many as the cluster's CPUs (and GPUs) hold at once."""
    seed: int = 0
    """Seeds the sampler: the same seed gives the same trial configurations."""
    grace_steps: int = 0
    """ASHA: steps before a trial may be stopped (0 = one evaluation interval)."""
    reduction_factor: float = 2.0
    perturb_steps: int = 0
    """PBT: steps between perturbations (0 = two evaluation intervals)."""
    objective: str = "auto"
    """``quality`` (the composite of musicgan.evaluate), ``FMD``, or ``auto``: quality for pianoroll
    models, FMD for spectrogram models (which have no voice measures)."""


def objective_metric(spec: SearchSpec, cfg: Config) -> str:
    """The reported key that trials are ranked, stopped and promoted by."""
    if spec.objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {spec.objective!r}; use {', '.join(OBJECTIVES)}")
    family = get_family(cfg.model.family)
    if spec.objective == "auto":
        return family.objective
    if spec.objective == "quality" and not family.voice_measures:
        raise ConfigError(f"the quality objective needs voice measures, which {family.name} models do not have; "
                          "use --objective FMD")
    return spec.objective


def base_config(spec: SearchSpec) -> Config:
    from musicgan.presets import load_preset

    cfg = load_preset(spec.preset, spec.overrides)
    cfg.train.num_workers = spec.workers_per_trial
    # Tune's schedulers need the objective in every report, and reports come with checkpoints.
    cfg.train.checkpoint_every_steps = cfg.train.eval_every_steps
    return cfg.validate()


def trial_cpus(cfg: Config) -> float:
    return DRIVER_CPUS + cfg.train.num_workers * cfg.train.cpus_per_worker + DATA_CPUS


def fit_concurrency(cfg: Config, requested: int) -> tuple[int, str]:
    """How many trials run at once: never more than the cluster holds (else they wait on each other's CPUs)."""
    import ray

    res = ray.cluster_resources()
    need = trial_cpus(cfg)
    fits = int(math.floor(res.get("CPU", 0) / need + 1e-9))
    why = f"{res.get('CPU', 0):g} CPUs / {need:g} per trial"
    if cfg.train.use_gpu:
        fits = min(fits, int(res.get("GPU", 0) // cfg.train.num_workers))
        why += f", {res.get('GPU', 0):g} GPUs / {cfg.train.num_workers} per trial"
    if fits < 1:
        raise ConfigError(f"one trial needs {need:g} CPUs ({cfg.train.num_workers} workers x "
                          f"{cfg.train.cpus_per_worker:g} + driver + data) but the cluster has only {why.split(' /')[0]}")
    if requested and requested > fits:
        print(f"tune: --max-concurrent {requested} lowered to {fits} ({why}); more would deadlock on CPUs")
    return (min(requested, fits) if requested else fits), why


# ---------------------------------------------------------------------------------------------
# the trial


def run_trial(config: dict, base: dict, data_dir: str, trials_dir: str, pbt: bool) -> None:
    """One trial: the base config with this trial's sampled values, trained by Ray Train."""
    from ray import tune

    from tuning.space import apply_params

    cfg = apply_params(from_dict(Config, base), config).validate()
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # trials at once: bars would interleave
    trial_id = tune.get_context().get_trial_id()
    trial_dir = Path(trials_dir) / trial_id
    # ray.train v2 hands RAY_TRAIN_* variables set here on to the controller (get_env_vars_to_propagate)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_INTERVAL_S)
    returned = _TRAIN_RETURNED.setdefault(trial_id, threading.Event())
    returned.clear()
    try:
        if pbt:
            return _run_pbt_segment(cfg, data_dir, trial_dir)
        from ray.tune.integration.ray_train import TuneReportCallback

        from musicgan.train import fit

        # Re-entering after an interruption resumes the Train run from its own latest checkpoint.
        result = fit(cfg, data_dir, str(trial_dir), callbacks=[TuneReportCallback()], data_cpus_per_task=DATA_CPUS)
        if result.error:
            raise result.error
    finally:
        returned.set()


def _await_stopped_run(trial_id: str, trials_dir: str) -> None:
    """In the trial's actor, as Tune stops it: when the scheduler stopped the trial, wait (at most
    STOP_GRACE_S) for its Train run, which ends at its next step once it sees the stop file, and
    frees its own workers. A module function, so that this module's registry is the one read."""
    import musicgan.train

    if getattr(musicgan.train, "STOP_FILE", None) != STOP_FILE:
        return  # a Train loop that does not stop at the file: waiting would only add steps
    returned = _TRAIN_RETURNED.get(trial_id)
    if returned is not None and (Path(trials_dir) / trial_id / STOP_FILE).exists():
        returned.wait(STOP_GRACE_S)


def _stoppable(trial_fn, trials_dir: str):
    """``trial_fn`` as Tune's trainable, whose actor, when the scheduler stopped the trial, first
    lets its Train run end."""
    from ray.tune.trainable import wrap_function

    class Trial(wrap_function(trial_fn)):
        def cleanup(self):
            _await_stopped_run(self.trial_id, trials_dir)
            super().cleanup()

    Trial.__name__ = Trial.__qualname__ = trial_fn.__name__  # Tune names trial folders after it
    return Trial


def _forwarder(queue):
    from ray.train import UserCallback

    class ForwardReports(UserCallback):
        """Runs on the Train controller: hands rank 0's metrics and the checkpoint path to the trial."""

        def after_report(self, run_context, metrics, checkpoint):
            path = checkpoint.path if checkpoint else None
            queue.put((dict(metrics[0], checkpoint_path=path), path))

    return ForwardReports()


def _run_pbt_segment(cfg: Config, data_dir: str, trial_dir: Path) -> None:
    """Train from Tune's checkpoint (the trial's own, or the one PBT cloned) and report checkpoints back.

    Every start of the function is a new Train run (``part_NN``): after an exploit the weights
    come from another trial, so the trial's own last Train checkpoint must not be resumed.
    """
    from ray import tune
    from ray.util.queue import Queue

    from musicgan.train import fit

    trial_dir.mkdir(parents=True, exist_ok=True)
    run = trial_dir / f"part_{len(list(trial_dir.glob('part_*'))):02d}"
    init = None
    start = tune.get_checkpoint()
    if start is not None:
        init = start.to_directory(str(run.with_name(run.name + "_start")))
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    outcome: dict = {}

    def work():
        try:
            outcome["result"] = fit(cfg, data_dir, str(run), callbacks=[_forwarder(queue)], init_checkpoint=init,
                                    data_cpus_per_task=DATA_CPUS)
        except BaseException as e:  # surfaced below, in the trial's thread
            outcome["error"] = e
        finally:
            queue.put(None)

    thread = threading.Thread(target=work, name="musicgan-pbt-fit", daemon=True)
    thread.start()
    # maxsize=1: Train's next report waits until this one is copied into Tune's storage, so the
    # checkpoint it names is never deleted by num_to_keep while being copied.
    while (item := queue.get()) is not None:
        metrics, path = item
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(path) if path else None)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    if outcome["result"].error:
        raise outcome["result"].error


@functools.cache
def _stop_signal_class():
    from ray.tune import Callback

    from musicgan.storage import resolve

    class StopSignal(Callback):
        """On the driver: when the scheduler stops a trial, write ``stop.json`` in the trial's folder.

        Tune's own stop ends the trial's actor, and the Train run's controller and workers die with
        it mid-step (0.1-0.2 s after the decision on two busy cores); their placement group is then
        freed only by Ray Train's cleaner. With the file the loop ends by itself at the end of its
        step, and the actor waits for that (:func:`_await_stopped_run`). Tune marks the result that
        the scheduler stopped ``done`` before callbacks see it; a trial's last result is ``done``
        too, but at the last step. The file also records the decision (step, time) for the waste
        figures of benchmarks/tune_efficiency.py.
        """

        def __init__(self, trials_dir: str, total_steps: int):
            self.trials_dir, self.total_steps = trials_dir, total_steps

        def on_trial_result(self, iteration, trials, trial, result, **info):
            step = int(result.get("step", 0))
            if result.get("done") and step < self.total_steps:
                resolve(Path(self.trials_dir) / trial.trial_id / STOP_FILE).write_json_atomic(
                    {"step": step, "time": time.time()})

    StopSignal.__module__, StopSignal.__qualname__ = __name__, "StopSignal"  # found by name: see __getattr__
    return StopSignal


def __getattr__(name: str):
    # Tune pickles RunConfig's callbacks into the experiment state; unpickling finds the class here,
    # built on first use so that importing this module does not import Ray.
    if name == "StopSignal":
        return _stop_signal_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def stop_signal(trials_dir: str, total_steps: int):
    """The Tune callback that tells a stopped trial's Train loop to stop (see :data:`STOP_FILE`)."""
    return _stop_signal_class()(trials_dir, total_steps)


def make_trainable(cfg: Config, data_dir: str, trials_dir: str, pbt: bool = False):
    """The Tune trainable of a search: :func:`run_trial` on ``cfg``, in an actor of DRIVER_CPUS."""
    from ray import tune

    trial_fn = tune.with_parameters(run_trial, base=to_dict(cfg), data_dir=data_dir, trials_dir=trials_dir, pbt=pbt)
    return tune.with_resources(_stoppable(trial_fn, trials_dir), {"CPU": DRIVER_CPUS})


# ---------------------------------------------------------------------------------------------
# the search


def make_scheduler(spec: SearchSpec, cfg: Config, params):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    every = cfg.train.eval_every_steps
    total = cfg.train.total_steps
    if spec.scheduler == "asha":
        grace = spec.grace_steps or every
        if grace >= total:
            raise ConfigError(f"ASHA grace period {grace} steps is not below the {total} training steps; "
                              "nothing could be stopped early (lower --grace-steps or train.eval_every_steps)")
        # stop_last_trials=False: a trial that reached the last step ends on its own, cleanly.
        return ASHAScheduler(time_attr="step", max_t=total, grace_period=grace, reduction_factor=spec.reduction_factor,
                             stop_last_trials=False)
    if spec.scheduler == "pbt":
        mutations = {p.key: p.to_tune() for p in params if p.key in PBT_KEYS}
        if not mutations:
            raise ConfigError(f"PBT perturbs {' and '.join(PBT_KEYS)}; put at least one of them in the space")
        return PopulationBasedTraining(time_attr="step", perturbation_interval=spec.perturb_steps or 2 * every,
                                       hyperparam_mutations=mutations, quantile_fraction=0.25)
    if spec.scheduler == "none":
        return FIFOScheduler()
    raise ConfigError(f"unknown scheduler {spec.scheduler!r}; use asha, pbt or none")


def make_searcher(spec: SearchSpec, concurrency: int, metric: str = "quality"):
    """The search algorithm, limited to ``concurrency`` trials at once."""
    if spec.searcher == "random":
        from ray.tune.search import BasicVariantGenerator

        # Tune ignores TuneConfig.max_concurrent_trials for this generator: it takes its own limit.
        return BasicVariantGenerator(max_concurrent=concurrency, random_state=spec.seed)
    if spec.searcher == "tpe":
        if spec.scheduler == "pbt":
            raise ConfigError("PBT chooses its own configurations; use --searcher random with --scheduler pbt")
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise ConfigError("--searcher tpe needs Optuna: pip install optuna (or pip install -e '.[tune]')") from None
        try:
            from ray.tune.search import ConcurrencyLimiter

            return ConcurrencyLimiter(OptunaSearch(metric=metric, mode=MODE, seed=spec.seed), concurrency)
        except (AssertionError, ImportError, RuntimeError):
            raise ConfigError("--searcher tpe needs Optuna: pip install optuna (or pip install -e '.[tune]')") from None
    raise ConfigError(f"unknown searcher {spec.searcher!r}; use random or tpe")


def _check_same_search(run: Path, spec: SearchSpec, space_text: str) -> None:
    saved = run / "search.json"
    if not saved.exists():
        return
    old = json.loads(saved.read_text())
    now = _spec_record(spec, space_text)
    old.setdefault("objective", "FMD")  # searches before the objective could be chosen ranked by FMD
    diff = [k for k in ("data_dir", "space_text", "trials", "scheduler", "searcher", "preset", "overrides",
                        "workers_per_trial", "seed", "objective") if old.get(k) != now.get(k)]
    if diff:
        raise ConfigError(f"{run} holds a search with other settings ({', '.join(diff)}); use another --run-dir "
                          "or the same arguments to resume it")


def _spec_record(spec: SearchSpec, space_text: str) -> dict:
    rec = dict(vars(spec))
    rec["data_dir"] = str(Path(spec.data_dir).resolve())
    rec["space_text"] = space_text
    return rec


def run_search(spec: SearchSpec, progress: bool = True):
    """Run (or resume) a search; returns ``(rows, best_row)`` and writes the result files."""
    from ray import tune

    from musicgan.data.shards import load_manifest
    from musicgan.ray_utils import ensure_ray
    from tuning import results
    from tuning.space import load_space

    cfg = base_config(spec)
    metric = objective_metric(spec, cfg)
    params = load_space(spec.space, cfg)
    manifest = load_manifest(spec.data_dir)
    if spec.trials < 1:
        raise ConfigError("--trials must be at least 1")
    scheduler = make_scheduler(spec, cfg, params)
    run = Path(spec.run_dir).resolve()
    space_text = Path(spec.space).read_text()
    _check_same_search(run, spec, space_text)
    run.mkdir(parents=True, exist_ok=True)
    (run / "search.json").write_text(json.dumps(_spec_record(spec, space_text) | {"base_config": to_dict(cfg)},
                                                indent=2))
    ensure_ray()
    concurrency, why = fit_concurrency(cfg, spec.max_concurrent)
    print(f"tune: {spec.trials} trials of {cfg.train.total_steps} steps, objective {metric}, scheduler "
          f"{spec.scheduler}, searcher {spec.searcher}, {concurrency} at a time ({why}), "
          f"data {manifest['counts']['train_examples']} training phrases")
    for p in params:
        print(f"  {p.key:24s} {p.describe()}")

    trainable = make_trainable(cfg, str(Path(spec.data_dir).resolve()), str(run / "trials"),
                               pbt=spec.scheduler == "pbt")
    experiment = run / "tune"
    if tune.Tuner.can_restore(str(experiment)):
        print(f"tune: resuming the search in {experiment} (finished trials are kept, not rerun)")
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={p.key: p.to_tune() for p in params},
            tune_config=tune.TuneConfig(metric=metric, mode=MODE, num_samples=spec.trials, scheduler=scheduler,
                                        search_alg=make_searcher(spec, concurrency, metric)),
            run_config=tune.RunConfig(
                name="tune", storage_path=str(run), verbose=1 if progress else 0,
                callbacks=[stop_signal(str(run / "trials"), cfg.train.total_steps)],
                failure_config=tune.FailureConfig(max_failures=1),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if spec.scheduler == "pbt" else None)),
        )
    grid = tuner.fit()
    rows = results.rows_from_grid(grid, [p.key for p in params], cfg.train.total_steps, trials_dir=run / "trials",
                                  metric=metric)
    best = results.write_all(rows, run, [p.key for p in params], cfg.train.total_steps,
                             manifest_hash=manifest.get("feature_hash"))
    return rows, best


# ---------------------------------------------------------------------------------------------
# command line (also reached as `musicgan tune`)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data build folder (with manifest.json)")
    p.add_argument("--space", default=str(Path(__file__).parent / "spaces" / "default.yaml"),
                   help="search space YAML (default: tuning/spaces/default.yaml)")
    p.add_argument("--trials", type=int, default=8, help="number of trials (default 8)")
    p.add_argument("--scheduler", choices=["asha", "pbt", "none"], default="asha",
                   help="asha: stop poor trials early [default]; pbt: perturb learning rates and copy the best "
                        "trials' weights; none: run every trial to the end")
    p.add_argument("--searcher", choices=["random", "tpe"], default="random",
                   help="random [default], or tpe (Optuna's model-based search; needs `pip install optuna`)")
    p.add_argument("--run-dir", required=True, help="search folder: trials, results.csv/.md, objective.png")
    p.add_argument("--preset", default="cpu-tiny", help="training preset every trial starts from (default cpu-tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config key for every trial (repeatable)")
    p.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers per trial (default 1)")
    p.add_argument("--max-concurrent", type=int, default=0,
                   help="trials at once (default: as many as the cluster's CPUs hold; more is lowered)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed: the same seed gives the same trials")
    p.add_argument("--grace-steps", type=int, default=0, help="ASHA: steps before a trial can be stopped")
    p.add_argument("--reduction-factor", type=float, default=2.0, help="ASHA: keep 1/this of trials per rung")
    p.add_argument("--perturb-steps", type=int, default=0, help="PBT: steps between perturbations")
    p.add_argument("--objective", choices=list(OBJECTIVES), default="auto",
                   help="what trials are ranked, stopped and promoted by (lower is better): quality, the "
                        "composite of the evaluate targets and FMD over its train-vs-val floor; FMD alone; "
                        "auto [default]: quality for pianoroll models, FMD for audio models")
    p.add_argument("--promote", default=None, metavar="NAME",
                   help="after the search, promote the best checkpoint into the registry under NAME")
    p.add_argument("--registry", default="models", help="model registry folder or URI (default ./models)")
    p.add_argument("--quiet", action="store_true", help="no Tune progress tables")


DESCRIPTION = (
    "Search the GAN's hyperparameters with Ray Tune. Each trial trains with Ray Train (one or more\n"
    "workers) and reports its objective (lower is better) at every evaluation: by default `quality`,\n"
    "how far it is from every target of `musicgan evaluate` (voice leading, leaps, register, C2ST,\n"
    "...) in doublings, plus FMD over the data's own train-vs-val floor; or FMD alone\n"
    "(--objective FMD). ASHA stops poor trials early, PBT perturbs learning rates. Re-running the\n"
    "same command resumes an interrupted search; finished trials are not run again.\n\n"
    "The space is a YAML file of dotted config keys, each with one sampler:\n"
    "  optim.lr_g: {loguniform: [2.0e-4, 3.0e-3]}\n"
    "  loss.critic_steps: {choice: [1, 2, 3]}\n"
    "  model.channels: {randint: [64, 193]}\n"
    "Outputs: RUN/results.csv, results.md (sorted table), objective.png, best.json."
)
EPILOG = ("example:  musicgan tune --data data/bach --trials 8 --scheduler asha --run-dir runs/search "
          "--promote bach")


def spec_from_args(args) -> SearchSpec:
    return SearchSpec(data_dir=args.data, space=args.space, run_dir=args.run_dir, trials=args.trials,
                      scheduler=args.scheduler, searcher=args.searcher, preset=args.preset,
                      overrides=list(args.overrides), workers_per_trial=args.workers_per_trial,
                      max_concurrent=args.max_concurrent, seed=args.seed, grace_steps=args.grace_steps,
                      reduction_factor=args.reduction_factor, perturb_steps=args.perturb_steps,
                      objective=args.objective)


def command(args) -> int:
    from tuning import results

    spec = spec_from_args(args)
    if spec.workers_per_trial < 1:
        raise ConfigError("--workers-per-trial must be at least 1")
    rows, best = run_search(spec, progress=not args.quiet)
    print(results.summary_text(rows, Path(spec.run_dir), base_config(spec).train.total_steps))
    if args.promote:
        if best is None:
            raise ConfigError("no trial finished with a checkpoint; nothing to promote")
        from musicgan.registry import promote, summary_text

        print(summary_text(promote(spec.run_dir, args.registry, args.promote)))
    return 0 if best is not None else 1


def main(argv: list[str] | None = None) -> int:
    from musicgan.cli import run_command

    p = argparse.ArgumentParser(prog="python -m tuning.search", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run_command(command, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
