"""Does Ray Data streaming keep the GAN fed? Training steps per second fed from the shards by Ray
Data (``get_dataset_shard`` + ``iter_torch_batches`` with a local shuffle) against the same loop
fed from in-memory tensors, in the same Ray Train run (2 workers x 0.5 CPU, as ``make demo`` runs).

Phases alternate (memory, stream, memory, stream) after a warm-up of both, so drift on a shared
machine hits both sides. Last line: JSON with ``ratio`` = streamed steps/s over in-memory steps/s
(target >= 0.95).

    python benchmarks/ingest_feed.py [--data DIR] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


FETCH_STEPS = 8  # as in musicgan.train


def train_func(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from musicgan.config import Config, from_dict
    from musicgan.data.shards import ShardReader
    from musicgan.gan import make_gan, train
    from musicgan.model import build_models

    torch.set_num_threads(1)
    cfg = from_dict(Config, config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(0)
    g, d = build_models(cfg.model, config["shape"], config["bars"], 1)
    wrap = lambda m: ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"broadcast_buffers": False})  # noqa: E731
    gan = make_gan(wrap(g), wrap(d), cfg)
    bs = cfg.train.batch_size_per_worker

    x = torch.from_numpy(ShardReader(config["data"], split="train").arrays()["x"])[rank::world]

    def memory():
        while True:
            perm = torch.randperm(len(x))
            for i in range(0, len(x) - bs + 1, bs):
                yield x[perm[i : i + bs]], None

    shard = ray.train.get_dataset_shard("train")

    def stream():
        while True:
            for b in shard.iter_torch_batches(batch_size=bs * FETCH_STEPS, prefetch_batches=2,
                                              local_shuffle_buffer_size=cfg.train.shuffle_buffer_rows):
                for i in range(len(b["x"]) // bs):
                    yield b["x"][i * bs : (i + 1) * bs].float(), None

    sources = {"memory": memory(), "stream": stream()}
    seconds = {"memory": 0.0, "stream": 0.0}
    steps = config["steps"]

    def run(name: str, n: int) -> float:
        cfg.train.total_steps = gan.step + n
        t0 = time.perf_counter()
        train(gan, sources[name], cfg, lambda s, m: None)
        return time.perf_counter() - t0

    run("memory", 3)  # warm-up: allocator, DDP buckets, and the streaming pipeline's start
    run("stream", 3)
    for name in ("memory", "stream", "memory", "stream"):
        seconds[name] += run(name, steps)
    if rank == 0:  # Result.metrics only carries metrics reported with a checkpoint: use a file
        Path(config["out"]).write_text(json.dumps({"memory_steps_per_s": 2 * steps / seconds["memory"],
                                                   "stream_steps_per_s": 2 * steps / seconds["stream"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a data build (default: build the Bach chorales into a temp dir)")
    ap.add_argument("--steps", type=int, default=30, help="generator steps per phase")
    ap.add_argument("--preset", default="cpu")
    args = ap.parse_args()

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from musicgan.config import FeatureConfig, to_dict
    from musicgan.data.build import build
    from musicgan.data.shards import load_manifest, ray_dataset
    from musicgan.presets import load_preset
    from musicgan.ray_utils import ensure_ray

    ensure_ray()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or build("bach", str(Path(tmp) / "bach"), FeatureConfig(), progress=False).out
        manifest = load_manifest(data)
        cfg = load_preset(args.preset, ["train.batch_size_per_worker=32"])
        trainer = TorchTrainer(
            train_func,
            train_loop_config={"cfg": to_dict(cfg), "data": data, "steps": args.steps, "out": str(Path(tmp) / "res.json"),
                               "shape": manifest["example_shape"], "bars": manifest["feature_config"]["bars"]},
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
            datasets={"train": ray_dataset(data, split="train")},
            run_config=RunConfig(name="ingest-feed", storage_path=str(Path(tmp) / "runs")),
        )
        trainer.fit()
        m = json.loads((Path(tmp) / "res.json").read_text())
    ratio = m["stream_steps_per_s"] / m["memory_steps_per_s"]
    print(f"GAN steps fed two ways, 2 workers x 0.5 CPU, batch 32 per worker, {2 * args.steps} steps each:")
    print(f"  in-memory tensors        {m['memory_steps_per_s']:.2f} steps/s")
    print(f"  Ray Data from shards     {m['stream_steps_per_s']:.2f} steps/s")
    print(f"  ratio                    {ratio:.3f}  (target >= 0.95)")
    print(json.dumps({"ratio": round(ratio, 3), "stream_steps_per_s": round(m["stream_steps_per_s"], 3),
                      "memory_steps_per_s": round(m["memory_steps_per_s"], 3)}))


if __name__ == "__main__":
    main()
