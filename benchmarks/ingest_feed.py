"""Does Ray Data keep the GAN fed? Training steps per second fed from the data build by Ray Data
(``get_dataset_shard`` and :func:`musicgan.train.feed_batches`, the feed training uses) against the
same loop fed from in-memory tensors, in one Ray Train run (2 workers x 0.5 CPU, as ``make demo``).

The Ray Data side is prepared as ``musicgan train`` prepares it (:func:`musicgan.train.train_dataset`):
cached in the object store or streamed from the shards, as ``train.cache_data=auto`` decides for the
build, unless ``--mode`` forces one. ``--runs`` rounds run inside the one Train run (one Train start
is about a minute of a two-core machine); each round times memory, stream, stream, memory, so a
linear drift of a shared machine hits both sides alike. Last line: JSON with ``ratio`` = streamed
over in-memory steps/s, the median of the rounds (target >= 0.95), ``ratio_worst`` and each round.

    python benchmarks/ingest_feed.py [--data DIR] [--steps 30] [--runs 3] [--mode auto|cache|stream]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.95


def train_func(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from musicgan.config import Config, from_dict
    from musicgan.data.shards import ShardReader
    from musicgan.families import get_family
    from musicgan.gan import make_gan, train
    from musicgan.model import build_for_data
    from musicgan.train import _threads, feed_batches

    cfg = from_dict(Config, config["cfg"])
    data = config["data"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(_threads(cfg))
    torch.manual_seed(0)
    g, d = build_for_data(cfg.model, data)
    def wrap(m):  # as musicgan.train does: one DDP per network, BatchNorm buffers per rank
        return ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"broadcast_buffers": False})

    gan = make_gan(wrap(g), wrap(d), cfg)
    bs = cfg.train.batch_size_per_worker
    device = ray.train.torch.get_device()
    to_tensors = get_family(cfg.model.family).batch_tensors(data, device)

    arrays = ShardReader(config["data_dir"], split="train").arrays()
    rows = {k: torch.from_numpy(v[rank::world]) for k, v in arrays.items() if k != "source"}

    def memory():
        while True:
            perm = torch.randperm(len(rows["x"]))
            for i in range(0, len(perm) - bs + 1, bs):
                yield to_tensors(rows, perm[i : i + bs])

    sources = {"memory": memory(), "stream": feed_batches(ray.train.get_dataset_shard("train"), cfg, to_tensors, device,
                                                          rank)}
    steps = config["steps"]

    def run(name: str, n: int) -> float:
        cfg.train.total_steps = gan.step + n
        t0 = time.perf_counter()
        train(gan, sources[name], cfg, lambda s, m: None, device)
        return time.perf_counter() - t0

    run("memory", 3)  # warm-up: allocator, DDP buckets, and the data pipeline's start
    run("stream", 3)
    rounds = []
    for _ in range(config["runs"]):
        seconds = {"memory": 0.0, "stream": 0.0}
        for name in ("memory", "stream", "stream", "memory"):
            seconds[name] += run(name, steps)
        rounds.append({f"{k}_steps_per_s": 2 * steps / v for k, v in seconds.items()})
    if rank == 0:  # Result.metrics only carries metrics reported with a checkpoint: use a file
        Path(config["out"]).write_text(json.dumps(rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a data build (default: build the Bach chorales into a temp dir)")
    ap.add_argument("--steps", type=int, default=30, help="generator steps per phase (4 phases a round)")
    ap.add_argument("--runs", type=int, default=3, help="measurement rounds (the figure is their median)")
    ap.add_argument("--mode", choices=("auto", "cache", "stream"), default="auto",
                    help="Ray Data side: as train.cache_data=auto picks (default), or forced")
    ap.add_argument("--preset", default="cpu")
    args = ap.parse_args()
    if args.runs < 1 or args.steps < 1:
        ap.error("--runs and --steps must be at least 1")

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from musicgan import checkpoint as ckpt
    from musicgan.config import FeatureConfig, to_dict
    from musicgan.data.build import build
    from musicgan.data.shards import load_manifest
    from musicgan.presets import load_preset
    from musicgan.ray_utils import ensure_ray
    from musicgan.train import data_line, train_dataset

    ensure_ray()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or build("bach", str(Path(tmp) / "bach"), FeatureConfig(), progress=False).out
        manifest = load_manifest(data)
        cfg = load_preset(args.preset, ["train.batch_size_per_worker=32", "train.num_workers=2"])
        dataset, mode, why = train_dataset(cfg, data, manifest, mode=None if args.mode == "auto" else args.mode)
        print(data_line(mode, why), flush=True)
        trainer = TorchTrainer(
            train_func,
            train_loop_config={"cfg": to_dict(cfg), "data": ckpt.data_info(manifest), "data_dir": data,
                               "steps": args.steps, "runs": args.runs, "out": str(Path(tmp) / "res.json")},
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
            datasets={"train": dataset},
            run_config=RunConfig(name="ingest-feed", storage_path=str(Path(tmp) / "runs")),
        )
        trainer.fit()
        rounds = json.loads((Path(tmp) / "res.json").read_text())
    ratios = [r["stream_steps_per_s"] / r["memory_steps_per_s"] for r in rounds]
    ratio = statistics.median(ratios)
    print(f"GAN steps fed two ways, 2 workers x 0.5 CPU, batch 32 per worker, {2 * args.steps} steps a side a round; "
          f"Ray Data side: {mode}")
    for i, (r, q) in enumerate(zip(rounds, ratios), 1):
        print(f"  round {i}: in-memory {r['memory_steps_per_s']:.2f} steps/s, Ray Data {r['stream_steps_per_s']:.2f} "
              f"steps/s, ratio {q:.3f}")
    print(f"  ratio: median {ratio:.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}  (target >= {TARGET})")
    print(json.dumps({"ratio": round(ratio, 3), "ratio_worst": round(min(ratios), 3),
                      "ratio_runs": [round(q, 3) for q in ratios], "ratio_target": TARGET, "ratio_met": ratio >= TARGET,
                      "mode": mode,
                      "stream_steps_per_s": round(statistics.median(r["stream_steps_per_s"] for r in rounds), 3),
                      "memory_steps_per_s": round(statistics.median(r["memory_steps_per_s"] for r in rounds), 3)}))


if __name__ == "__main__":
    main()
