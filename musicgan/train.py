"""Ray Train glue for the GAN loop in :mod:`musicgan.gan`. Every Ray call of training lives here.

The driver (:func:`fit`) builds a ``TorchTrainer`` over the shards; each worker runs
:func:`train_func`: build G and D, wrap each in its own DDP, restore the latest checkpoint if the
run has one, stream its shard of the data, and run the loop. Rank 0 evaluates, writes TensorBoard,
CSV, samples and plots into the run directory, and hands a checkpoint to ``ray.train.report`` every
``checkpoint_every_steps``; every rank reports at the same steps (``report`` is a barrier).

A run is named by its directory, so re-running the same command resumes it, and
``FailureConfig(max_failures)`` restarts a failed worker group from the latest checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from musicgan import checkpoint as ckpt
from musicgan.config import Config, ConfigError, ModelConfig, from_dict, to_dict
from musicgan.families import check_feature_kind, family_for_kind, get_family
from musicgan.gan import generate, make_gan, train
from musicgan.metrics import EVAL_SEED
from musicgan.model import build_for_data
from musicgan.storage import resolve

FETCH_STEPS = 8  # training batches taken from Ray Data per iterator round trip
PREFETCH_FETCHES = 2  # fetches (of FETCH_STEPS batches) Ray Data prepares ahead of the loop
# train.cache_data=auto caches the decoded train split in the object store up to this size: the
# cached blocks stay pinned for the whole run (a Tune search pins one copy per running trial), and
# a cache the store cannot hold spills to disk, where every epoch reads it back slower than the
# compressed shards stream. 1 GiB, or a quarter of the store where the store is smaller (it also
# carries Ray Data's in-flight blocks and the checkpoints).
CACHE_MAX_BYTES = 1 << 30
CACHE_MAX_STORE_FRACTION = 0.25
# A run ends at the end of the step in which it finds this file in its run directory: a Tune search
# writes it when its scheduler stops the trial (tuning/search.py, StopSignal). Tune's own stop kills
# the run with the trial's actor mid-step, and only Ray Train's cleaner then frees its CPUs.
STOP_FILE = "stop.json"
QUALITY_KEYS = ("QN", "UPC", "EB", "polyphony", "in_scale", "TD", "pitch_range")
VOICE_KEYS = ("leap_semitones", "octave_leaps", "parallels_per_100", "crossing", "spacing")
# generated / held-out, plotted in metrics.png (1 = as in the data)
RATIO_KEYS = ("pitch_range", "leap_semitones", "octave_leaps", "parallels_per_100", "crossing", "spacing")


def held_out(data_dir: str, max_rows: int) -> dict[str, np.ndarray]:
    """The val split's phrases (``x``, bool) and their source pieces; all phrases when a tiny build
    holds out fewer than 8."""
    from musicgan.data.shards import ShardReader

    val = ShardReader(data_dir, split="val").arrays(max_rows=max_rows)
    if len(val["x"]) < 8:
        val = ShardReader(data_dir, split=None).arrays(max_rows=max_rows)
    return {"x": val["x"] > 0, "source": val["source"]}


class Evaluator:
    """Rank 0's view of the held-out data; turns a generator into a flat dict of metrics.

    The same measures and targets as ``musicgan evaluate`` (:mod:`musicgan.evaluate`) on
    ``eval_samples`` phrases: today's metrics, the voice measures, C2ST, the training set's floors,
    and ``quality``, the search objective."""

    def __init__(self, data_dir: str, data: dict, n_samples: int, max_real: int = 1000, max_train: int = 3000,
                 fmd_untrained: float | None = None):
        from musicgan.data.shards import ShardReader
        from musicgan.evaluate import Reference

        self.data, self.n, self.fmd_untrained = data, n_samples, fmd_untrained
        val = held_out(data_dir, max_real)
        self.val = val["x"]
        train = ShardReader(data_dir, split="train").arrays(max_rows=max_train)
        self.train = train["x"] > 0
        # All held-out phrases (up to max_real), not as many as generated: Bach's rare events (an octave
        # leap in 1,500 leaps) need them. The floors use as many training phrases as generated ones.
        self.reference = Reference(self.val, self.train, data["steps_per_bar"], data["pitch_low"],
                                   data["track_names"], self.n, real_groups=val["source"], train_groups=train["source"])

    def __call__(self, g) -> tuple[dict[str, float], np.ndarray]:
        """Metrics of ``eval_samples`` phrases from ``g``, and those phrases."""
        from musicgan.evaluate import judge

        fake = generate(g, self.n, seed=EVAL_SEED).numpy()
        res = self.reference.measure(fake)
        if self.fmd_untrained:
            res["FMD_untrained"] = self.fmd_untrained
            res["FMD_ratio"] = res["FMD"] / self.fmd_untrained
        checks = judge(res)
        out = {k: res.get(k) for k in ("FMD", "diversity", "copies", "FMD_floor", "FMD_floor_ratio",
                                       "vertical_distance", "vertical_distance_floor", "quality")}
        out["C2ST"], out["C2ST_floor"] = res["C2ST"].get("accuracy"), res["C2ST_floor"].get("accuracy")
        out["targets_missed"] = sum(not c["ok"] for c in checks.values())
        gen, real = res["generated"], res["real"]
        out.update({f"gen/{k}": gen[k] for k in QUALITY_KEYS + VOICE_KEYS})
        out.update({f"real/{k}": real[k] for k in QUALITY_KEYS + VOICE_KEYS})
        out.update({f"ratio/{k}": gen[k] / real[k] if real[k] else None for k in RATIO_KEYS})
        return out, fake


class RunLog:
    """Rank 0's files in the run directory: metrics.csv, TensorBoard events, samples, plots."""

    def __init__(self, run_dir: Path, data: dict, resume_step: int):
        from tensorboardX import SummaryWriter

        self.dir, self.data = run_dir, data
        self.csv = run_dir / "metrics.csv"
        self.rows = self._read_rows(resume_step)
        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def _read_rows(self, resume_step: int) -> list[dict]:
        """The rows up to ``resume_step``. A restart from an earlier step (from step 0 when there is no
        checkpoint yet, or a worker-group restart) would log those steps again, so metrics.csv keeps
        only the rows up to it; the file as it was is kept first as ``metrics.part-N.csv``, never lost."""
        if not self.csv.exists():
            return []
        with self.csv.open() as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if int(r["step"]) <= resume_step]
        if len(kept) < len(rows):
            part = self._keep_part()
            print(f"[musicgan] restarting at step {resume_step}: metrics.csv had {len(rows) - len(kept)} later "
                  f"row(s); the file as it was is kept as {part.name}", flush=True)
            self._write(kept)  # no duplicate steps in metrics.csv
        return kept

    def _keep_part(self) -> Path:
        """Keep metrics.csv as it is under the next free ``metrics.part-N.csv`` (a hard link: atomic)."""
        n = 1
        while True:
            part = self.csv.with_name(f"metrics.part-{n}.csv")
            try:
                os.link(self.csv, part)  # fails if the part exists: take the next number
                return part
            except FileExistsError:
                n += 1
            except OSError:  # a filesystem without hard links
                if not part.exists():
                    resolve(part).write_bytes_atomic(self.csv.read_bytes())
                    return part
                n += 1

    def _write(self, rows: list[dict]) -> None:
        keys = sorted({k for r in rows for k in r} - {"step"})
        text = io.StringIO()
        w = csv.DictWriter(text, ["step"] + keys)
        w.writeheader()
        w.writerows(rows)
        resolve(self.csv).write_text_atomic(text.getvalue())

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(k, v, step)
        self.rows.append({"step": step, **{k: v for k, v in metrics.items() if v is not None}})
        self._write(self.rows)
        self.tb.flush()

    def samples(self, step: int, fake: np.ndarray) -> None:
        out = self.dir / "samples" / f"step_{step:06d}"
        out.mkdir(parents=True, exist_ok=True)
        family_for_kind(self.data["kind"]).write_run_samples(fake, self.data, out, step)

    def plots(self) -> None:
        from musicgan.render import metric_plot

        metric_plot(self.rows, ["d_loss", "g_loss", "wasserstein"], self.dir / "losses.png", "losses")
        family_for_kind(self.data["kind"]).plot_run_metrics(self.rows, self.dir)


def _threads(cfg: Config) -> int:
    return cfg.train.threads_per_worker or max(1, math.ceil(cfg.train.cpus_per_worker))


def train_func(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    cfg = from_dict(Config, config["cfg"])
    data, run_dir = config["data"], Path(config["run_dir"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(_threads(cfg))
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.train.seed)  # same initial weights everywhere (DDP also broadcasts rank 0's)

    family = get_family(cfg.model.family)
    g, d = build_for_data(cfg.model, data)
    g, d = g.to(device), d.to(device)
    if world > 1:
        # Separate DDP modules for G and D; BatchNorm buffers stay per rank (FIELD-NOTES: GAN + DDP).
        g = ray.train.torch.prepare_model(g, parallel_strategy_kwargs={"broadcast_buffers": False})
        d = ray.train.torch.prepare_model(d, parallel_strategy_kwargs={"broadcast_buffers": False})
    gan = make_gan(g, d, cfg)

    restored = ray.train.get_checkpoint()
    if restored:
        with restored.as_directory() as path:
            ckpt.restore(path, gan)
    elif config.get("init_checkpoint"):  # a fresh run that starts from another run's weights (PBT exploit)
        ckpt.restore(config["init_checkpoint"], gan)
        restored = True
    if rank != 0 or not restored:
        torch.manual_seed(cfg.train.seed + 7919 * rank + gan.step)  # distinct, reproducible noise per rank

    batches = feed_batches(ray.train.get_dataset_shard("train"), cfg, family.batch_tensors(data, device), device,
                           rank)

    evaluator = log = None
    if rank == 0:
        evaluator = family.evaluator(config["data_dir"], data, cfg.train.eval_samples, config.get("untrained_fmd"))
        log = RunLog(run_dir, data, gan.step)
        with (run_dir / "events.jsonl").open("a") as f:  # one line per worker-group start: restarts are visible
            f.write(json.dumps({"event": "start", "time": time.time(), "step": gan.step, "world_size": world,
                                "restored": bool(restored)}) + "\n")
    t_start, step_start = time.time(), gan.step
    fmd_untrained = config.get("untrained_fmd")
    stop_file = run_dir / STOP_FILE

    def on_step(step: int, metrics: dict[str, float]) -> None:
        t = cfg.train
        if _stop_requested(stop_file, device):
            raise _Stopped(step)
        last = step == t.total_steps
        if rank == 0 and (step % 10 == 0 or step == step_start + 1 or last):
            rate = (step - step_start) / max(time.time() - t_start, 1e-9)
            eta = (t.total_steps - step) / max(rate, 1e-9)
            print(f"[musicgan] step {step}/{t.total_steps}  d_loss {metrics['d_loss']:+.3f}  "
                  f"g_loss {metrics['g_loss']:+.3f}  {rate:.2f} steps/s  eta {eta / 60:.1f} min", flush=True)
        report = dict(metrics, step=step)
        if rank == 0 and (step % t.eval_every_steps == 0 or last):
            quality, fake = evaluator(gan.g_ema)
            report.update(quality)
            if fmd_untrained:
                report["FMD_untrained"] = fmd_untrained
                report["FMD_ratio"] = quality["FMD"] / fmd_untrained
            report = {k: v for k, v in report.items() if v is not None}  # Tune and the CSV take numbers
            log.log(step, report)
            log.samples(step, fake)
            log.plots()
            print(family.eval_line(step, quality), flush=True)
        if step % t.checkpoint_every_steps == 0 or last:
            name = f"checkpoint_{step:06d}"
            if rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    path = ckpt.save(Path(tmp) / name, gan, cfg, data)
                    ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(str(path)),
                                     checkpoint_dir_name=name)
            else:
                ray.train.report(report, checkpoint=None, checkpoint_dir_name=name)

    try:
        train(gan, batches, cfg, on_step, device)
    except _Stopped as stop:
        if rank == 0:  # where it really stopped: the cost a search counts (tuning/results.py)
            with (run_dir / "events.jsonl").open("a") as f:
                f.write(json.dumps({"event": "stopped", "time": time.time(), "step": stop.step}) + "\n")
            print(f"[musicgan] stopped by the search at step {stop.step}", flush=True)


def feed_batches(shard, cfg: Config, to_tensors, device="auto", rank: int = 0):
    """Training batches ``(real, labels)`` from this worker's Ray Data shard, epoch after epoch, forever.

    Shared with benchmarks/ingest_feed.py, so the benchmark measures the feed that training uses.
    Several steps' rows come per fetch: fewer round trips through Ray Data's iterator, which shares
    this worker's Python interpreter and cores with the training step. Every rank gets the same rows
    per epoch (equal split), so the same number of steps.
    """
    bs = cfg.train.batch_size_per_worker
    while True:
        got = 0
        for b in shard.iter_torch_batches(batch_size=bs * FETCH_STEPS, prefetch_batches=PREFETCH_FETCHES,
                                          local_shuffle_buffer_size=cfg.train.shuffle_buffer_rows, device=device):
            got += len(b["x"]) // bs
            for i in range(len(b["x"]) // bs):
                yield to_tensors(b, slice(i * bs, (i + 1) * bs))
        if got == 0:
            raise RuntimeError(f"worker {rank} received no full batch of {bs}; lower batch_size_per_worker")


def train_split_bytes(manifest: dict) -> int:
    """What the decoded train split takes in the object store, from the manifest alone: rows times
    one decoded example (data.shards.decoded_dtype: pianorolls uint8, mels float32) plus
    the three int64 label columns. The shards' own bytes are no guide: zstd packs the bit-packed
    chorales about 100x."""
    from musicgan.data.shards import decoded_dtype

    per_example = math.prod(manifest["example_shape"]) * np.dtype(decoded_dtype(manifest["feature_config"]["kind"])).itemsize
    return manifest["counts"]["train_examples"] * (per_example + 3 * 8)


def data_mode(cache_data, train_bytes: int, object_store_bytes: float | None = None) -> tuple[str, str]:
    """``("cache" | "stream", why)`` for ``train.cache_data`` and a train split of ``train_bytes``
    (decoded) on a cluster whose object store holds ``object_store_bytes`` (None: unknown, the 1 GiB
    cap alone decides). Pure, so the decision is tested without Ray."""
    from musicgan.config import cache_data_setting

    setting = cache_data_setting(cache_data)
    size = f"{_mib(train_bytes)} of decoded train rows"
    if setting is True:
        return "cache", f"train.cache_data=true; {size}"
    if setting is False:
        return "stream", f"train.cache_data=false; {size}"
    limit, rule = float(CACHE_MAX_BYTES), f"the {_mib(CACHE_MAX_BYTES)} cap"
    if object_store_bytes is not None and CACHE_MAX_STORE_FRACTION * object_store_bytes < limit:
        limit = CACHE_MAX_STORE_FRACTION * object_store_bytes
        rule = f"{CACHE_MAX_STORE_FRACTION:.0%} of the {_mib(object_store_bytes)} object store"
    if train_bytes <= limit:
        return "cache", f"auto: {size}, within {rule}"
    return "stream", f"auto: {size}, more than {rule}"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def data_line(mode: str, why: str) -> str:
    """The one log line that says how a run is fed."""
    return f"data: {'cached in the object store' if mode == 'cache' else 'streamed from the shards'} ({why})"


def train_dataset(cfg: Config, data_dir: str, manifest: dict, cpus_per_task: float | None = None,
                  mode: str | None = None):
    """The train split as a Ray Dataset, cached or streamed as :func:`data_mode` decides (``mode``
    forces one); returns ``(dataset, mode, why)``. Call after ``ensure_ray``. A cached set's block
    order is reshuffled every epoch, as the streamed set's shard order is."""
    import ray

    from musicgan.data.shards import ray_dataset

    if mode is None:
        mode, why = data_mode(cfg.train.cache_data, train_split_bytes(manifest),
                              ray.cluster_resources().get("object_store_memory"))
    else:
        why = f"forced; {_mib(train_split_bytes(manifest))} of decoded train rows"
    ds = ray_dataset(data_dir, split="train", cpus_per_task=cpus_per_task)
    if mode == "cache":
        ds = ds.materialize().randomize_block_order()
    return ds, mode, why


def _stop_requested(stop_file: Path, device) -> bool:
    """Whether the search asked this run to stop: a stat per step (microseconds). With several workers
    every rank must stop at the same step (the next step's gradient all-reduce would wait forever for
    a rank that left), so rank 0's answer is broadcast: one tiny collective a step."""
    import torch.distributed as dist

    stop = stop_file.exists()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flag = torch.tensor([int(stop)], device=device)  # on the GPU under NCCL
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


class _Stopped(Exception):
    """Ends the loop cleanly after ``step`` steps (a plain return: no failure, no restart)."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def untrained_fmd(cfg: Config, data: dict, data_dir: str) -> float:
    """FMD of the generator before any training (same seed, same architecture): the yardstick."""
    torch.manual_seed(cfg.train.seed)
    g, _ = build_for_data(cfg.model, data)
    return get_family(cfg.model.family).untrained_fmd(g, cfg.train.eval_samples, data, data_dir)


def fit(cfg: Config, data_dir: str, run_dir: str, callbacks: list | None = None, init_checkpoint: str | None = None,
        data_cpus_per_task: float | None = None):
    """Train (or resume) the run in ``run_dir`` on the shards in ``data_dir``; returns Ray's Result.

    ``callbacks`` go to ``RunConfig`` (a Tune search passes its report callback). A new run starts
    from ``init_checkpoint`` when given (an existing run resumes from its own latest checkpoint
    instead). ``data_cpus_per_task`` sets Ray Data's read/decode task CPUs: several trials on a
    small machine need fractions, or a 1-CPU read task never fits beside their workers.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from musicgan.data.shards import load_manifest
    from musicgan.ray_utils import ensure_ray

    manifest = load_manifest(data_dir)
    check_feature_kind(cfg, manifest, data_dir)
    data = ckpt.data_info(manifest)
    per_worker = manifest["counts"]["train_examples"] // cfg.train.num_workers
    if per_worker < cfg.train.batch_size_per_worker:
        raise ConfigError(f"{manifest['counts']['train_examples']} training phrases are too few for "
                          f"{cfg.train.num_workers} workers x batch {cfg.train.batch_size_per_worker}")
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    _check_same_run(run, cfg, data)
    (run / "config.json").write_text(json.dumps({"config": to_dict(cfg), "data": data, "data_dir": str(data_dir)},
                                                indent=2))
    ensure_ray()
    train_data, mode, why = train_dataset(cfg, data_dir, manifest, data_cpus_per_task)
    print(f"[musicgan] {data_line(mode, why)}", flush=True)
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"cfg": to_dict(cfg), "data": data, "data_dir": str(Path(data_dir).resolve()),
                           "run_dir": str(run), "untrained_fmd": untrained_fmd(cfg, data, data_dir),
                           "init_checkpoint": init_checkpoint},
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu,
                                     resources_per_worker={"CPU": cfg.train.cpus_per_worker}),
        datasets={"train": train_data},
        run_config=RunConfig(name=run.name, storage_path=str(run.parent), callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=cfg.train.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=3)),
    )
    return trainer.fit()


def _check_same_run(run: Path, cfg: Config, data: dict) -> None:
    """Resuming a run with other data or another architecture would silently mix two runs: refuse."""
    saved = run / "config.json"
    if not saved.exists():
        return
    old = json.loads(saved.read_text())
    if old["data"]["feature_hash"] != data["feature_hash"]:
        raise ConfigError(f"{run} was trained on data with feature hash {old['data']['feature_hash']}, "
                          f"not {data['feature_hash']}; use another --run-dir")
    # rebuilt, so a run saved before a model option existed compares with that option's default
    if to_dict(from_dict(ModelConfig, old["config"]["model"])) != to_dict(cfg)["model"]:
        raise ConfigError(f"{run} holds a run with another model config; use another --run-dir")


def summary_text(result, run_dir: str) -> str:
    """The one-screen summary at the end of ``musicgan train``."""
    from musicgan.evaluate import PERCENT

    run = Path(run_dir)
    last = {}
    if (run / "metrics.csv").exists():
        with (run / "metrics.csv").open() as f:
            evals = [r for r in csv.DictReader(f) if r.get("FMD")]
        last = evals[-1] if evals else {}
    lines = ["train: " + ("FAILED: " + str(result.error).splitlines()[0] if result.error else "done")]
    if result.checkpoint:
        lines.append(f"  checkpoint   {result.checkpoint.path}")
    lines.append(f"  run dir      {run}  (metrics.csv, tensorboard/, samples/, losses.png, metrics.png)")
    if last:
        def f(k):
            return f"{float(last[k]):.3f}" if last.get(k) not in (None, "") else "-"

        if "pitch_accuracy" in last or "gen/QN" not in last:  # the spectrogram GAN
            lines.append(f"  step {last['step']}: FMD (mel statistics) {f('FMD')} (untrained {f('FMD_untrained')}, "
                         f"ratio {f('FMD_ratio')}), diversity {f('diversity')}")
            lines.append(f"  pitch accuracy {f('pitch_accuracy')} (training clips {f('pitch_accuracy_real')}, "
                         f"ratio {f('pitch_accuracy_ratio')}); pYIN on Griffin-Lim audio")
            lines.append(f"  next         musicgan sample --model {run} --pitch 60 --instrument all "
                         f"--out {run / 'samples' / 'final'}")
            return "\n".join(lines)
        lines.append(f"  step {last['step']}: FMD {f('FMD')} (untrained {f('FMD_untrained')}, training "
                     f"{f('FMD_floor')}), diversity {f('diversity')}, copies {f('copies')}, C2ST {f('C2ST')}")
        lines.append(f"  quality      {f('quality')} (the search objective; 0 = every target met), "
                     f"{last.get('targets_missed') or '-'} targets missed")
        def v(k):  # the rare-event rates as percentages, as in the evaluate table
            if k.split("/")[1] not in PERCENT or last.get(k) in (None, ""):
                return f(k)
            return f"{float(last[k]):.2%}"

        short = {"leap_semitones": "leap", "octave_leaps": "8ve_leaps", "parallels_per_100": "parallels"}
        for keys in (QUALITY_KEYS, VOICE_KEYS):
            lines.append("  metric       " + "  ".join(f"{short.get(k, k):>9}" for k in keys))
            lines.append("  generated    " + "  ".join(f"{v('gen/' + k):>9}" for k in keys))
            lines.append("  held-out     " + "  ".join(f"{v('real/' + k):>9}" for k in keys))
    lines.append(f"  next         musicgan sample --model {run} --n 8 --out {run / 'samples' / 'final'}")
    return "\n".join(lines)
